"""The log gate, the last check of every scenario's verify step.

Added to each scenario by `.config/molecule/config.yml` (verifier
additional_files_or_dirs) and run after the scenario's own tests
(molecule/conftest.py). On every host it reads the journals of OpenSIPS,
rtpengine, RTPProxy and MariaDB, and the logs of their containers; any
ERROR/CRITICAL line not on molecule/log-allowlist.yml for this scenario fails
it. The lines are kept under build/logs/<scenario>/<host>.jsonl.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import log_gate

testinfra_hosts = ["ansible://all"]

ROOT = Path(__file__).resolve().parents[2]


def test_no_error_line_beyond_the_allowlist(host):
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "unknown")
    name = host.backend.get_hostname()
    lines = [dict(line, host=name) for line in log_gate.collect_from(host)]
    keep = ROOT / "build" / "logs" / scenario
    keep.mkdir(parents=True, exist_ok=True)
    (keep / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    allowed, refused = log_gate.judge(lines, log_gate.load_allowlist(ROOT / "molecule" / "log-allowlist.yml"), scenario)
    assert not refused, log_gate.report(f"{scenario}, {name}", allowed, refused)
