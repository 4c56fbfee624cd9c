"""The repository as the Ansible collection sipedge.edge: built with ansible-galaxy, installed into an
empty path, and used from a playbook outside the repository through the FQCNs only."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=600)


def test_the_built_collection_installs_and_renders_through_its_fqcns(tmp_path):
    # nothing of the repository's ansible.cfg (roles_path, filter_plugins, library): only the collection
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "true"}
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]

    built = run([str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(tmp_path)],
                tmp_path, env)
    assert built.returncode == 0, built.stdout + built.stderr
    artifact = tmp_path / f"sipedge-edge-{version}.tar.gz"
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "roles/opensips/tasks/main.yml" in names and "plugins/modules/opensips_mi.py" in names
    assert not [n for n in names if n.startswith(("molecule/", ".venv/", "build/", "ansible_collections/"))]

    installed = run([str(BIN / "ansible-galaxy"), "collection", "install", str(artifact), "--no-deps",
                     "-p", str(tmp_path / "collections")], tmp_path, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    doc = run([str(BIN / "ansible-doc"), "sipedge.edge.opensips_mi"], tmp_path, env)
    assert doc.returncode == 0 and "ds_set_state" in doc.stdout, doc.stdout[-2000:] + doc.stderr

    out = tmp_path / "rendered"
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "One proxy rendered by the installed collection",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": True,
        "vars": {
            "opensips_render_dir": str(out),
            "opensips_listen_address": "192.0.2.10",
            "opensips_database_enabled": False, "opensips_auth_enabled": False,
            "opensips_usrloc_working_mode": "single-instance-no-db", "opensips_dialog_db_mode": "none",
            "opensips_media_relay": "none",
            "opensips_dispatcher_sets": [{"id": 1, "destinations": [{"uri": "sip:192.0.2.41:5080"}]}],
        },
        "tasks": [
            {"name": "Render through the FQCN", "ansible.builtin.include_role": {"name": "sipedge.edge.opensips",
                                                                                 "tasks_from": "render"}},
            {"name": "A filter of the collection", "ansible.builtin.assert": {
                "that": ["'sip:[2001:db8::1]:5070' | sipedge.edge.sip_uri_host == '2001:db8::1'"]}},
        ],
    }]))
    rendered = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
                    "-e", f"ansible_python_interpreter={sys.executable}"], tmp_path, env)
    assert rendered.returncode == 0, rendered.stdout[-5000:] + rendered.stderr[-2000:]
    cfg = (out / "opensips.cfg").read_text()
    assert "socket=udp:192.0.2.10:5060" in cfg
    assert "sip\\:192.0.2.41\\:5080" in (out / "dbtext" / "dispatcher").read_text()  # db_text escapes the colons


MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))


class _ArgumentSpec(Exception):
    """Raised in place of building the module, carrying the argument spec main() passed."""


@pytest.mark.parametrize("name", MODULES)
def test_each_module_documents_exactly_the_options_it_takes(name, monkeypatch):
    # what ansible-doc (and ansible-lint, and Galaxy) read: a documentation that does not parse is only a warning there
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT), "ANSIBLE_NOCOLOR": "1"}
    doc = run([str(BIN / "ansible-doc"), "-j", f"sipedge.edge.{name}"], ROOT, env)
    assert doc.returncode == 0 and "Unable to parse" not in doc.stderr, doc.stderr
    documented = json.loads(doc.stdout)[f"sipedge.edge.{name}"]["doc"]["options"]

    # what the module accepts: the argument_spec its main() hands to AnsibleModule
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module(f"ansible_collections.sipedge.edge.plugins.modules.{name}")

    def capture(*_args, argument_spec, **_kwargs):
        raise _ArgumentSpec(argument_spec)

    monkeypatch.setattr(module, "AnsibleModule", capture)
    with pytest.raises(_ArgumentSpec) as spec:
        module.main()
    accepted = spec.value.args[0]
    assert sorted(documented) == sorted(accepted)
    for option, rules in accepted.items():
        assert documented[option].get("type", "str") == rules.get("type", "str"), option
        assert bool(documented[option].get("required")) == bool(rules.get("required")), option
