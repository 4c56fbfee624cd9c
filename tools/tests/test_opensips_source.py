"""OpenSIPS source discovery against real directories, a real HTTP mirror and the real Docker CLI."""

import gzip
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

import opensips_source as osrc

INDEX = """Package: opensips
Version: 3.6.8-1
Architecture: amd64

Package: opensips-mysql-module
Version: 3.6.8-1
Architecture: amd64
"""

NO_REGISTRY = {"OPENSIPS_IMAGE": "sipedge-test/absent-image:never"}


@pytest.fixture
def flat_repo(tmp_path):
    (tmp_path / "Packages.gz").write_bytes(gzip.compress(INDEX.encode()))
    return tmp_path


def test_versions_are_read_from_a_packages_index():
    assert osrc.packages_versions(INDEX) == ["3.6.8-1"]
    assert osrc.packages_versions(INDEX, "opensips-mysql-module") == ["3.6.8-1"]


@pytest.mark.parametrize(
    ("versions", "wanted", "expected"),
    [(["3.6.8-1"], "3.6", True), (["1:3.6.0-2"], "3.6", True), (["3.5.4-1"], "3.6", False), (["3.60.1"], "3.6", False)],
)
def test_release_matching(versions, wanted, expected):
    assert osrc.version_matches(versions, wanted) is expected


def test_local_directory_from_the_environment_wins(flat_repo):
    src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": str(flat_repo), **NO_REGISTRY})
    assert src.apt_dir == str(flat_repo)
    assert (src.apt_suite, src.apt_trusted, src.apt_origin) == ("./", True, "OPENSIPS_APT_MIRROR")
    assert src.kinds == ["package"]
    assert src.reason == ""


def test_conventional_local_mirror_is_found(flat_repo):
    src = osrc.discover("3.6", {"OPENSIPS_LOCAL_MIRROR": str(flat_repo), **NO_REGISTRY})
    assert src.apt_dir == str(flat_repo)
    assert src.apt_origin == "local mirror"


def test_wrong_release_in_the_mirror_is_not_used(flat_repo):
    src = osrc.discover("3.4", {"OPENSIPS_APT_MIRROR": str(flat_repo), **NO_REGISTRY})
    assert src.kinds == []
    assert src.reason == osrc.SKIP_REASON
    assert any("no opensips 3.4.x" in note for note in src.notes)


def test_directory_without_index_is_explained(tmp_path):
    src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": str(tmp_path), **NO_REGISTRY})
    assert src.kinds == []
    assert any("no Packages index" in note for note in src.notes)


def test_http_mirror_is_checked_over_the_network(flat_repo):
    server, _ = osrc.serve_directory(str(flat_repo))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": url, **NO_REGISTRY})
        assert src.apt_url == url
        assert src.apt_suite == "./"
        with urllib.request.urlopen(url + "Packages.gz", timeout=5) as response:
            assert gzip.decompress(response.read()).decode() == INDEX
    finally:
        server.shutdown()


def test_unreachable_mirror_is_not_replaced_by_a_fallback(flat_repo):
    env = {"OPENSIPS_APT_MIRROR": "http://127.0.0.1:9/", "OPENSIPS_LOCAL_MIRROR": str(flat_repo), **NO_REGISTRY}
    src = osrc.discover("3.6", env)
    assert src.kinds == []
    assert any("OPENSIPS_APT_MIRROR" in note for note in src.notes)


@pytest.mark.skipif(shutil.which("docker") is None, reason="SKIPPED: no docker CLI on this machine")
def test_absent_image_is_reported_not_used(tmp_path):
    src = osrc.discover("3.6", {"OPENSIPS_LOCAL_MIRROR": str(tmp_path / "none"), **NO_REGISTRY})
    assert src.image == ""
    assert any("sipedge-test/absent-image:never" in note for note in src.notes)


def test_exec_passes_the_source_to_the_command(flat_repo, tmp_path, monkeypatch):
    out = tmp_path / "env.txt"
    monkeypatch.setenv("OPENSIPS_APT_MIRROR", str(flat_repo))
    monkeypatch.setenv("OPENSIPS_IMAGE", NO_REGISTRY["OPENSIPS_IMAGE"])
    rc = osrc.main(["exec", "--", "sh", "-c", f"env | grep ^OPENSIPS_ > {out}; curl -sf \"$OPENSIPS_APT_MIRROR/Packages.gz\" | gzip -dc | head -1 >> {out}"])
    assert rc == 0
    text = out.read_text()
    assert "OPENSIPS_SOURCE=package" in text
    assert "OPENSIPS_APT_MIRROR=http://" in text
    assert "Package: opensips" in text


def test_cli_env_output_is_shell_syntax(flat_repo):
    env = {"PATH": "/usr/bin:/bin", "OPENSIPS_APT_MIRROR": str(flat_repo), **NO_REGISTRY}
    out = subprocess.run(["python3", osrc.__file__, "env"], env=env, capture_output=True, text=True, check=True).stdout
    parsed = dict(line.split("=", 1) for line in out.splitlines())
    assert parsed["OPENSIPS_SOURCE"] == "package"
    assert parsed["OPENSIPS_VERSION"] == "3.6"


def test_mirror_of_the_vendor_layout_is_checked_by_its_release_file(tmp_path):
    (tmp_path / "dists" / "bookworm").mkdir(parents=True)
    (tmp_path / "dists" / "bookworm" / "Release").write_text("Suite: bookworm\n")
    server, _ = osrc.serve_directory(str(tmp_path))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": url, "OPENSIPS_APT_SUITE": "bookworm", **NO_REGISTRY})
        assert (src.apt_url, src.apt_suite, src.apt_trusted) == (url, "bookworm", False)
        missing = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": url, "OPENSIPS_APT_SUITE": "trixie", **NO_REGISTRY})
        assert missing.kinds == []
        assert any("dists/trixie/Release is not reachable" in note for note in missing.notes)
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("versions", "wanted", "expected"),
    [(["3.6.8-1", "3.5.9-1", "3.4.9-1"], "3.6", "3.5"), (["3.6.8-1"], "3.6", ""),
     (["1:3.5.2-1", "3.6.0-1"], "3.6", "3.5"), (["3.10.1-1", "3.9.0-1"], "3.10", "3.9"), (["3.7.0-1"], "3.6", "")],
)
def test_older_release_for_the_rolling_upgrade(versions, wanted, expected):
    assert osrc.older_release(versions, wanted) == expected


def test_a_mirror_with_two_releases_offers_the_older_one_to_upgrade_from(tmp_path):
    (tmp_path / "Packages").write_text(INDEX + "\nPackage: opensips\nVersion: 3.5.9-1\nArchitecture: amd64\n")
    src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": str(tmp_path), **NO_REGISTRY})
    assert src.environment()["OPENSIPS_UPGRADE_FROM_VERSION"] == "3.5"


def test_a_single_release_mirror_upgrades_from_itself(flat_repo):
    src = osrc.discover("3.6", {"OPENSIPS_APT_MIRROR": str(flat_repo), **NO_REGISTRY})
    assert src.environment()["OPENSIPS_UPGRADE_FROM_VERSION"] == "3.6"


def test_the_supported_releases_are_written_once():
    """The roles' lists and argument-spec choices agree with the opensips role's own data."""
    import yaml

    roles = Path(__file__).resolve().parents[2] / "roles"
    versions = osrc.supported_versions()
    assert versions == ["3.4", "3.5", "3.6"]
    db_vars = yaml.safe_load((roles / "opensips_db" / "vars" / "main.yml").read_text())
    assert db_vars["opensips_db_supported_releases"] == versions
    specs = yaml.safe_load((roles / "opensips" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert specs["main"]["options"]["opensips_version"]["choices"] == versions
    assert specs["undrain"]["options"]["opensips_version"]["choices"] == versions
    db_specs = yaml.safe_load((roles / "opensips_db" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert db_specs["main"]["options"]["opensips_db_release"]["choices"] == versions


def test_the_module_packages_come_from_the_role():
    packages = osrc.module_packages()
    assert packages[0] == "opensips" and "opensips-auth-modules" in packages and "opensips-mysql-module" in packages
    assert len(packages) == len(set(packages))
