"""The test runner: a missing source is a SKIPPED reason, and jobs run side by side."""

from __future__ import annotations

import json
import sys
import time

import opensips_source
import run_tests

BASE_IMAGE = "sipedge/debian12-systemd:latest"  # built by `make images` before the tests run


def test_image_requirement_is_met_by_a_local_image(monkeypatch):
    monkeypatch.delenv("SIPEDGE_TEST_IMAGE", raising=False)
    assert run_tests.missing([f"image:SIPEDGE_TEST_IMAGE={BASE_IMAGE}"], opensips_source.Source("3.6")) == ""


def test_image_requirement_names_the_image_and_the_variable(monkeypatch):
    monkeypatch.setenv("SIPEDGE_TEST_IMAGE", "sipedge/no-such-image:never")
    reason = run_tests.missing([f"image:SIPEDGE_TEST_IMAGE={BASE_IMAGE}"], opensips_source.Source("3.6"))
    assert reason == "image sipedge/no-such-image:never is not present (load it, or name another with SIPEDGE_TEST_IMAGE)"


def test_package_requirement_without_a_source_is_a_reason():
    assert "no OpenSIPS package source" in run_tests.missing(["opensips-package"], opensips_source.Source("3.6"))


def _sleeper(name: str, seconds: float, rc: int = 0) -> run_tests.Job:
    code = f"import time, sys; print('{name} ran'); time.sleep({seconds}); sys.exit({rc})"
    return run_tests.Job(name, [sys.executable, "-c", code])


def test_jobs_run_side_by_side_and_report_in_their_own_order(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_tests, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(run_tests, "DURATIONS", tmp_path / "durations.json")
    jobs = [_sleeper("a", 1.5), _sleeper("b", 1.5, rc=3), run_tests.Job("c", ["false"], skip="no source"),
            _sleeper("d", 1.5)]
    start = time.monotonic()
    outcomes = run_tests.run_jobs(jobs, lanes=3)
    elapsed = time.monotonic() - start
    assert [o.name for o in outcomes] == ["a", "b", "c", "d"]
    assert [o.status for o in outcomes] == ["passed", "failed", "skipped", "passed"]
    assert outcomes[1].reason == "exit 3"
    assert outcomes[2].reason == "no source"
    assert elapsed < 4, f"three 1.5 s jobs on three lanes took {elapsed:.1f}s: they did not run side by side"
    out = capsys.readouterr().out
    # each job's output is printed whole, between its own banner and end line
    for name in ("a", "b", "d"):
        block = out.split(f"==== {name}: ")[1].split(f"==== end of {name} ====")[0]
        assert f"{name} ran" in block
    assert "SKIPPED: no source" in out
    assert (tmp_path / "logs" / "a.log").read_text() == "a ran\n"
    recorded = json.loads((tmp_path / "durations.json").read_text())
    assert recorded["a"] >= 1 and "c" not in recorded


def test_longest_job_starts_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_tests, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(run_tests, "DURATIONS", tmp_path / "durations.json")
    (tmp_path / "durations.json").write_text(json.dumps({"short": 1, "long": 100}))
    run_tests.run_jobs([_sleeper("short", 0), _sleeper("long", 0)], lanes=1)
    out = capsys.readouterr().out
    assert out.index("started  long") < out.index("started  short")


def test_scenarios_and_the_lab_never_share_a_network():
    """The jobs run side by side (and next to a running lab): two Docker networks on overlapping
    subnets, or with one name, cannot both exist, so the second scenario would fail to start."""
    import ipaddress

    import yaml

    networks = []
    for path in sorted(run_tests.MOLECULE.glob("*/molecule.yml")):
        for platform in yaml.safe_load(path.read_text()).get("platforms", []):
            for net in platform.get("docker_networks", []):
                for ipam in net.get("ipam_config", []):
                    networks.append((path.parent.name, net["name"], ipaddress.ip_network(ipam["subnet"])))
    lab = yaml.safe_load((run_tests.ROOT / "inventories/lab/group_vars/all/lab.yml").read_text())["lab_networks"]
    networks += [("lab", n["name"], ipaddress.ip_network(n["subnet"])) for n in lab.values()]
    assert len(networks) >= 14
    for i, (owner, name, subnet) in enumerate(networks):
        for other_owner, other_name, other_subnet in networks[i + 1:]:
            assert name != other_name, (owner, other_owner, name)
            assert not subnet.overlaps(other_subnet), f"{owner}/{name} {subnet} overlaps {other_owner}/{other_name} {other_subnet}"


def test_a_failed_jobs_digest_names_the_failing_tests_and_nothing_else(tmp_path):
    log = tmp_path / "molecule-x.log"
    log.write_text("\n".join([
        "PLAY [Converge] ***", "ok: [clu-proxy1]", "tests/test_a.py::test_one PASSED",
        "E   AssertionError: {'address_moved_s': 9.1}", "E   assert False",
        "FAILED tests/test_a.py::test_two - AssertionError: {'address_moved_s': 9.1}",
        "log gate (cluster): 2 error line(s), 1 refused", "noise line",
        "  \x1b[2m│\x1b[0m FAILED tests/test_b.py::test_three - assert 2 == 0",
    ]) + "\n")
    digest = run_tests.failure_digest(log)
    assert digest == ["E   AssertionError: {'address_moved_s': 9.1}", "E   assert False",
                      "FAILED tests/test_a.py::test_two - AssertionError: {'address_moved_s': 9.1}",
                      "log gate (cluster): 2 error line(s), 1 refused",
                      "FAILED tests/test_b.py::test_three - assert 2 == 0"]
    assert run_tests.failure_digest(tmp_path / "absent.log") == []
