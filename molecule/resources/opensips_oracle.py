"""The real OpenSIPS parser as a test oracle: `opensips -C -f FILE` of a given release.

It uses whatever source is reachable (see tools/opensips_source.py): the image
`opensips/opensips:<version>` (or OPENSIPS_IMAGE when its version matches), or
the packages of an apt mirror installed into a throwaway container built from
the shared base image. When neither exists, `find()` says why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import opensips_source

BASE_IMAGE = os.environ.get("SIPEDGE_BASE_IMAGE", "sipedge/debian12-systemd:latest")
# every module package the opensips role may install, from the role's own data
PACKAGES = opensips_source.module_packages()


def _docker(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def release_of(version_output: str) -> str:
    """'3.6' from `opensips -V` output ('version: opensips 3.6.8 (x86_64/linux)')."""
    match = re.search(r"opensips (\d+\.\d+)\.", version_output)
    return match.group(1) if match else ""


class _ContainerOracle:
    """One idle container per session that has the release's /usr/sbin/opensips; each file is copied in
    and checked there."""

    def __init__(self, image: str, *run_options: str):
        self.name = f"sipedge-opensips-oracle-{uuid.uuid4().hex[:8]}"
        _docker("run", "-d", "--name", self.name, *run_options, "--entrypoint", "sleep", image, "infinity",
                check=True)

    def check(self, cfg: Path) -> tuple[int, str]:
        target = f"/tmp/{uuid.uuid4().hex}.cfg"
        _docker("cp", str(cfg.resolve()), f"{self.name}:{target}", check=True)
        run = _docker("exec", self.name, "/usr/sbin/opensips", "-C", "-f", target)
        return run.returncode, run.stdout + run.stderr

    def close(self) -> None:
        _docker("rm", "-f", self.name)


class ImageOracle(_ContainerOracle):
    """The release's image, without a network."""

    def __init__(self, image: str):
        super().__init__(image, "--network", "none")
        self.image = image
        self.where = f"image {image}"

    def serve(self, cfg: Path, dbtext: Path, mi_method: str, timeout: float = 20.0,
              params: dict | None = None, ready=None) -> tuple[dict | None, str]:
        """Start the real OpenSIPS on ``cfg`` with the db_text tables in ``dbtext`` (mounted where the
        config expects them, /etc/opensips/dbtext) and return one MI reply over HTTP, plus its log.
        ``ready(reply)``, when given, must hold too: the MI answers before every process has run its
        startup (the startup route's statistics, say), so the question is asked again until then."""
        name = f"sipedge-opensips-serve-{uuid.uuid4().hex[:8]}"
        _docker("run", "-d", "--name", name, "--network", "none",
                "-v", f"{cfg.resolve()}:/etc/opensips/opensips.cfg:ro", "-v", f"{dbtext.resolve()}:/etc/opensips/dbtext:ro",
                "--entrypoint", "sh", self.image, "-c",
                "mkdir -p /run/opensips && exec /usr/sbin/opensips -F -f /etc/opensips/opensips.cfg", check=True)
        try:
            body = json.dumps({"jsonrpc": "2.0", "method": mi_method, "params": params or {"full": 1}, "id": 1})
            deadline = time.monotonic() + timeout
            reply, last = None, ""
            while time.monotonic() < deadline:
                run = _docker("exec", name, "curl", "-s", "-m", "3", "-H", "Content-Type: application/json",
                              "-d", body, "http://127.0.0.1:8888/mi")
                if run.returncode == 0 and run.stdout.strip():
                    reply = json.loads(run.stdout)
                    # an error may only mean: still starting (a loaded box)
                    if "error" not in reply and (ready is None or ready(reply)):
                        return reply, _docker("logs", name).stderr
                time.sleep(0.5)
            # the last MI attempt's own error (curl missing from the image, say) ends the log
            return reply, _docker("logs", name).stderr + "\n" + last
        finally:
            _docker("rm", "-f", name)


class MirrorOracle(_ContainerOracle):
    """A container from the base image with the release's packages from the mirror."""

    def __init__(self, url: str, suite: str, trusted: bool, version: str):
        super().__init__(BASE_IMAGE)
        self.where = f"packages from {url}"
        option = "[trusted=yes] " if trusted else ""
        line = f"deb {option}{url} {suite}"
        pinned = " ".join(f"{package}={version}.*" for package in PACKAGES)  # the release, in a multi-release mirror
        install = (
            f"echo '{line}' > /etc/apt/sources.list.d/opensips.list && apt-get update -qq && "
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {pinned} >/dev/null"
        )
        run = _docker("exec", self.name, "sh", "-c", install)
        if run.returncode != 0:
            self.close()
            raise RuntimeError(f"installing OpenSIPS from {url} failed:\n{run.stdout}{run.stderr}")


def find(version: str):
    """(oracle, "") for the release, or (None, reason)."""
    src = opensips_source.discover(version)
    images = [src.image] if src.image else []
    # OPENSIPS_IMAGE names the release under test; the others may still be present under the vendor's tags
    vendor = f"{opensips_source.VENDOR_IMAGE}:{version}"
    if images and vendor not in images and opensips_source.docker_image_present(vendor):
        images.append(vendor)
    for image in images:
        probe = _docker("run", "--rm", "--entrypoint", "/usr/sbin/opensips", image, "-V")
        if release_of(probe.stdout + probe.stderr) == version:
            return ImageOracle(image), ""
        src.notes.append(f"{image} is not OpenSIPS {version}")
    server = None
    if src.apt_dir and not src.apt_url:
        server, src.apt_url = opensips_source.serve_directory(src.apt_dir)
    if src.apt_url:
        try:
            return MirrorOracle(src.apt_url, src.apt_suite or "./", src.apt_trusted, version), ""
        finally:
            if server:
                server.shutdown()
    reason = f"no OpenSIPS {version} binary reachable (set OPENSIPS_APT_MIRROR or OPENSIPS_IMAGE): " + "; ".join(src.notes)
    return None, reason
