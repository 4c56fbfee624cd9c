"""The SIP test kit is a package installed in .venv (pyproject.toml), not a path set by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_kit_module_imports_from_anywhere_without_a_path():
    modules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # opensips_oracle asks tools/opensips_source for the release: only that one needs the tools
    kit = [m for m in modules if m != "opensips_oracle"]
    run = subprocess.run([sys.executable, "-c", f"import {', '.join(kit)}; print('ok')"], cwd="/", env=env,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_the_kit_is_the_repository_s_own_files():
    """Editable: a change to a kit module is what the next test run imports."""
    run = subprocess.run([sys.executable, "-c", "import sipkit, log_gate; print(sipkit.__file__); print(log_gate.__file__)"],
                         cwd="/", capture_output=True, text=True, check=True)
    assert run.stdout.split() == [str(ROOT / "molecule" / "resources" / "sipkit.py"),
                                  str(ROOT / "molecule" / "resources" / "log_gate.py")]


def test_nothing_puts_the_kit_on_the_path_by_hand():
    for path in [ROOT / "pytest.ini", ROOT / "Makefile", *ROOT.glob("benchmarks/*.py")]:
        text = path.read_text()
        assert "molecule/resources" not in text.replace("molecule/resources/tests", ""), path
        assert "sys.path.insert" not in text, path
