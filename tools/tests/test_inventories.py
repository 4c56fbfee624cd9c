"""The staging/production example inventories: they load, their vault opens with the
documented demo password, and every vault_* variable they use is in the vault."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_PASSWORD = ROOT / "inventories" / "DEMO-vault-password.txt"
ENVIRONMENTS = ["staging", "production"]
BIN = Path(sys.executable).parent


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, check=False, cwd=ROOT)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_vault_is_encrypted(env):
    assert (ROOT / "inventories" / env / "group_vars" / "all" / "vault.yml").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inventory_loads_and_every_vault_variable_exists(env):
    run = ansible("ansible-inventory", "-i", f"inventories/{env}", "--list", "--vault-password-file", str(DEMO_PASSWORD))
    assert run.returncode == 0, run.stderr
    hostvars = json.loads(run.stdout)["_meta"]["hostvars"]
    assert {"sip_proxies", "sip_db", "media_relays", "media_servers"} <= set(json.loads(run.stdout))
    defined = set().union(*(h.keys() for h in hostvars.values()))
    plain = "".join(p.read_text() for p in (ROOT / "inventories" / env).rglob("*.yml") if p.name != "vault.yml")
    used = set(re.findall(r"\b(vault_[a-z0-9_]+)", plain))
    assert used, "the example inventory references no vault variable"
    assert used <= defined, used - defined


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_secret_in_plain_text(env):
    for path in (ROOT / "inventories" / env).rglob("*.yml"):
        if path.name == "vault.yml":
            continue
        text = path.read_text()
        assert "PRIVATE KEY" not in text, path
        assert not re.search(r"password:\s*[^\"'{\s]", text), path


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_site_playbook_parses_against_the_inventory(env):
    run = ansible("ansible-playbook", "-i", f"inventories/{env}", "--vault-password-file", str(DEMO_PASSWORD),
                  "--syntax-check", "playbooks/site.yml")
    assert run.returncode == 0, run.stdout + run.stderr
