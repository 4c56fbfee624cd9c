"""The log gate: what counts as an error line, the allow-list's own rules, and a
collection from a real journal (a container running journald, when Docker has
the base image)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

import log_gate

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = ROOT / "molecule" / "log-allowlist.yml"
BASE_IMAGE = "sipedge/debian12-systemd:latest"

# lines as the daemons wrote them in the lab (journal MESSAGE, priority)
SEEN = [
    ("CRITICAL:db_mysql:db_mysql_submit_query: driver error (1048): Column 'to_tag' cannot be null", 2, True),
    ("ERROR:acc:acc_db_request: failed to insert into missed_calls table", 3, True),
    ("ERR: [core] FAILED TO CREATE KERNEL TABLE 0 (No such file or directory), KERNEL FORWARDING DISABLED", 3, True),
    ("[1701] [ERROR] Aborted connection 12 to db: 'opensips'", 6, True),  # MariaDB writes to stderr: text only
    ("ERROR:rtpengine:rtpe_function_call: proxy replied with error: Ran out of ports", None, True),  # docker logs
    ("WARNING:core:handle_new_connect: tcp connection refused", 4, False),
    ("NOTICE:core:main: version: opensips 3.6.8 (x86_64/linux)", 5, False),
    ("media server sip:10.210.0.41:5060 failed (408), trying the next", 5, False),
    ("INFO: [core] Startup complete, version 10.5.3.5-1+deb12u1", 6, False),
]


@pytest.mark.parametrize("message, priority, expected", SEEN)
def test_error_lines_are_told_by_priority_or_level_word(message, priority, expected):
    assert log_gate.is_error(priority, message) is expected


def line(message, host="stack-proxy", source="opensips"):
    return {"host": host, "source": source, "priority": 3, "message": message}


def test_a_line_is_allowed_only_in_the_contexts_its_entry_names():
    allowlist = [{"pattern": "Unable to parse msg", "contexts": ["full-stack"], "test": "t::corpus",
                  "why": "corpus", "regex": re.compile("Unable to parse msg")}]
    lines = [line("ERROR:core:receive_msg: Unable to parse msg received from [10.0.0.1:5060]")] * 3
    allowed, refused = log_gate.judge(lines, allowlist, "full-stack")
    assert (allowed, refused) == ({"t::corpus": 3}, {})
    allowed, refused = log_gate.judge(lines, allowlist, "opensips-package")
    assert not allowed and sum(refused.values()) == 3 and len(refused) == 1  # repeats fold into one kind


def test_the_report_names_each_refused_line_and_the_exit_status_is_1(tmp_path):
    (tmp_path / "stack-proxy.jsonl").write_text(
        json.dumps({"source": "opensips", "priority": 2,
                    "message": "CRITICAL:db_mysql:db_mysql_submit_query: driver error (1048): "
                               "Column 'to_tag' cannot be null"}) + "\n")
    (tmp_path / "empty.yml").write_text("[]\n")
    run = subprocess.run(["python3", str(Path(log_gate.__file__)), "judge", "--context", "full-stack",
                          "--allowlist", str(tmp_path / "empty.yml"), str(tmp_path / "stack-proxy.jsonl")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "REFUSED x1 stack-proxy opensips: CRITICAL:db_mysql" in run.stdout


def test_every_allowlist_entry_names_a_real_test_and_scenario():
    entries = log_gate.load_allowlist(ALLOWLIST)
    scenarios = {p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")}
    for entry in entries:
        assert set(entry["contexts"]) <= scenarios | {"bench"}, entry
        path, _, name = entry["test"].partition("::")
        tree = ast.parse((ROOT / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{entry['test']}: no such test"
        assert len(entry["why"].split()) >= 5, entry


def test_collect_reads_a_real_journal():
    """journald in the base image: a line logged at err by the 'opensips' unit is collected, a notice
    is not, and a unit the gate does not watch is ignored."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False).returncode:
        pytest.skip(f"SKIPPED: no {BASE_IMAGE} image (make images builds it)")
    name = "sipedge-log-gate-test"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--name", name, "--cap-add", "SYS_ADMIN", "--cgroupns=host",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    BASE_IMAGE], check=True, capture_output=True)
    try:
        def sh(cmd):
            return subprocess.run(["docker", "exec", name, "sh", "-c", cmd], capture_output=True, text=True,
                                  check=False)
        for _ in range(30):
            if sh("systemctl is-system-running --wait 2>/dev/null; test -S /run/systemd/journal/socket").returncode == 0:
                break
            time.sleep(1)
        sh("systemd-run --unit=opensips -p Type=oneshot sh -c "
           "'echo \"<3>ERROR:acc:acc_db_request: failed to insert into acc table\"; "
           "echo \"<5>NOTICE:core:main: ready\"'")
        sh("systemd-run --unit=other -p Type=oneshot sh -c 'echo \"<3>ERROR: not ours\"'")
        subprocess.run(["docker", "cp", str(Path(log_gate.__file__)), f"{name}:/tmp/log_gate.py"], check=True)
        out = ""
        for _ in range(10):
            out = sh("python3 /tmp/log_gate.py collect").stdout
            if out.strip():
                break
            time.sleep(1)
        lines = [json.loads(x) for x in out.splitlines()]
        assert [(x["source"], x["message"]) for x in lines] == \
            [("opensips", "ERROR:acc:acc_db_request: failed to insert into acc table")], out
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
