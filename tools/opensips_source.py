#!/usr/bin/env python3
"""Find an OpenSIPS source for the tests and the lab.

Order (first hit wins, separately for packages and for the image):
  1. the environment: OPENSIPS_APT_MIRROR (an apt URL, or a local directory
     holding a flat repository) and OPENSIPS_IMAGE (a Docker image name);
  2. local: a flat apt repository at /srv/opensips-apt (OPENSIPS_LOCAL_MIRROR
     overrides the path) and an image `opensips/opensips:<version>` that is
     already present;
  3. the vendor: https://apt.opensips.org and `docker pull opensips/opensips:<version>`.

A local directory is served to the containers over HTTP by `exec`, on the
address of the Docker bridge, for as long as the command runs.

  opensips_source.py [--version 3.6] show      # human-readable
  opensips_source.py [--version 3.6] env       # shell assignments
  opensips_source.py [--version 3.6] exec -- CMD ARGS...
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROLE_VARS = Path(__file__).resolve().parents[1] / "roles" / "opensips" / "vars" / "main.yml"


def role_data() -> dict:
    """The opensips role's own data (roles/opensips/vars/main.yml), the one place for the supported
    releases (opensips_supported_versions) and the module packages (opensips_feature_packages)."""
    import yaml  # the venv's (ansible's) PyYAML; only the callers that need the role's data import it

    return yaml.safe_load(ROLE_VARS.read_text())


def supported_versions() -> list[str]:
    return [str(v) for v in role_data()["opensips_supported_versions"]]


def module_packages() -> list[str]:
    """Every package of every feature, each once, in the role's order."""
    out: list[str] = []
    for packages in role_data()["opensips_feature_packages"].values():
        out += [p for p in packages if p not in out]
    return out


VENDOR_APT = "https://apt.opensips.org"
VENDOR_IMAGE = "opensips/opensips"
LOCAL_MIRROR = "/srv/opensips-apt"
DEFAULT_VERSION = "3.6"
SKIP_REASON = "no OpenSIPS package source or image reachable (set OPENSIPS_APT_MIRROR or OPENSIPS_IMAGE)"
HTTP_TIMEOUT = 5
MIRROR_PORT = "8731"


@dataclass
class Source:
    """What was found. ``apt_dir`` is set when a local directory must be served."""

    version: str
    apt_url: str = ""
    apt_suite: str = ""
    apt_trusted: bool = False
    apt_dir: str = ""
    apt_origin: str = ""
    image: str = ""
    image_origin: str = ""
    upgrade_from: str = ""         # an older release the same package source holds (rolling-upgrade test)
    notes: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [k for k, v in (("package", self.apt_url or self.apt_dir), ("docker", self.image)) if v]

    @property
    def reason(self) -> str:
        return "" if self.kinds else SKIP_REASON

    def environment(self) -> dict[str, str]:
        return {
            "OPENSIPS_VERSION": self.version,
            "OPENSIPS_SOURCE": "+".join(self.kinds) or "none",
            "OPENSIPS_APT_MIRROR": self.apt_url,
            "OPENSIPS_APT_SUITE": self.apt_suite,
            "OPENSIPS_APT_TRUSTED": "true" if self.apt_trusted else "false",
            "OPENSIPS_IMAGE": self.image,
            "OPENSIPS_SKIP_REASON": self.reason,
            "OPENSIPS_UPGRADE_FROM_VERSION": self.upgrade_from or self.version,
        }


def packages_versions(index_text: str, package: str = "opensips") -> list[str]:
    """Versions of ``package`` listed in an apt Packages index."""
    versions, current = [], None
    for line in index_text.splitlines():
        if line.startswith("Package:"):
            current = line.split(":", 1)[1].strip()
        elif line.startswith("Version:") and current == package:
            versions.append(line.split(":", 1)[1].strip())
    return versions


def version_matches(versions: list[str], wanted: str) -> bool:
    """Does any Debian version (epoch allowed) belong to release ``wanted`` (e.g. 3.6)?"""
    pattern = re.compile(rf"^(\d+:)?{re.escape(wanted)}\.")
    return any(pattern.match(v) for v in versions)


def older_release(versions: list[str], wanted: str) -> str:
    """The newest release (major.minor) among Debian ``versions`` that is older than ``wanted``; '' if none."""
    def key(release: str) -> tuple[int, ...]:
        return tuple(int(x) for x in release.split("."))

    releases = set()
    for v in versions:
        match = re.match(r"^(?:\d+:)?(\d+)\.(\d+)\.", v)
        if match:
            releases.add(f"{match.group(1)}.{match.group(2)}")
    older = [r for r in releases if key(r) < key(wanted)]
    return max(older, key=key) if older else ""


def read_flat_index(directory: Path) -> str | None:
    """The Packages index of a flat repository directory, or None."""
    plain, packed = directory / "Packages", directory / "Packages.gz"
    if plain.is_file():
        return plain.read_text(errors="replace")
    if packed.is_file():
        return gzip.decompress(packed.read_bytes()).decode(errors="replace")
    return None


def fetch_url(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 (operator-given URL)
            return response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None


def remote_flat_index(url: str) -> str | None:
    base = url.rstrip("/")
    for name, unpack in (("Packages", lambda b: b), ("Packages.gz", gzip.decompress)):
        data = fetch_url(f"{base}/{name}")
        if data is not None:
            try:
                return unpack(data).decode(errors="replace")
            except OSError:
                continue
    return None


def docker_image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0


def docker_pull(image: str) -> bool:
    try:
        return subprocess.run(["docker", "pull", "-q", image], capture_output=True, timeout=300, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def debian_codename() -> str:
    return os.environ.get("OPENSIPS_APT_CODENAME", "bookworm")


def _release_found(src: Source, index: str | None, where: str, origin: str, missing: str) -> bool:
    """Does the Packages ``index`` read from ``where`` carry the release? Notes why not."""
    if index is None:
        src.notes.append(f"{origin}: {where} {missing}")
        return False
    versions = packages_versions(index)
    src.upgrade_from = older_release(versions, src.version)
    if not version_matches(versions, src.version):
        src.notes.append(f"{origin}: {where} has no opensips {src.version}.x (found: {', '.join(versions) or 'none'})")
        return False
    return True


def _use_directory(src: Source, directory: Path, origin: str) -> bool:
    if not _release_found(src, read_flat_index(directory), str(directory), origin,
                          "has no Packages index (not a flat apt repository)"):
        return False
    src.apt_dir, src.apt_suite, src.apt_trusted, src.apt_origin = str(directory), "./", True, origin
    return True


def _use_url(src: Source, url: str, origin: str, env: dict[str, str]) -> bool:
    suite = env.get("OPENSIPS_APT_SUITE", "")
    if suite and suite != "./":
        # A mirror of the vendor's layout: dists/<suite>/<version>-releases.
        if fetch_url(f"{url.rstrip('/')}/dists/{suite}/Release") is None:
            src.notes.append(f"{origin}: {url} dists/{suite}/Release is not reachable")
            return False
        src.apt_url, src.apt_suite, src.apt_origin = url, suite, origin
        src.apt_trusted = env.get("OPENSIPS_APT_TRUSTED", "false") == "true"
        return True
    if not _release_found(src, remote_flat_index(url), url, origin,
                          "has no reachable flat Packages index (set OPENSIPS_APT_SUITE for a dists/ layout)"):
        return False
    src.apt_url, src.apt_suite, src.apt_origin = url, "./", origin
    src.apt_trusted = env.get("OPENSIPS_APT_TRUSTED", "true") == "true"
    return True


def find_packages(src: Source, env: dict[str, str]) -> None:
    given = env.get("OPENSIPS_APT_MIRROR", "")
    if given:
        path = Path(given.removeprefix("file://").removeprefix("file:"))
        if not given.startswith(("http://", "https://")) and path.is_dir():
            _use_directory(src, path, "OPENSIPS_APT_MIRROR")
        else:
            _use_url(src, given, "OPENSIPS_APT_MIRROR", env)
        return  # an explicit choice is never silently replaced
    local = Path(env.get("OPENSIPS_LOCAL_MIRROR", LOCAL_MIRROR))
    if local.is_dir() and _use_directory(src, local, "local mirror"):
        return
    release = f"{VENDOR_APT}/dists/{debian_codename()}/{src.version}-releases/Release"
    if fetch_url(release) is not None:
        src.apt_url, src.apt_suite, src.apt_origin = VENDOR_APT, debian_codename(), "vendor"
        major, minor = (int(x) for x in src.version.split(".")[:2])
        previous = f"{major}.{minor - 1}" if minor > 0 else ""
        if previous and fetch_url(f"{VENDOR_APT}/dists/{debian_codename()}/{previous}-releases/Release") is not None:
            src.upgrade_from = previous
    else:
        src.notes.append(f"vendor: {VENDOR_APT} is not reachable")


def find_image(src: Source, env: dict[str, str]) -> None:
    given = env.get("OPENSIPS_IMAGE", "")
    if given:
        if docker_image_present(given) or docker_pull(given):
            src.image, src.image_origin = given, "OPENSIPS_IMAGE"
        else:
            src.notes.append(f"OPENSIPS_IMAGE: {given} is neither present nor pullable")
        return
    vendor = f"{VENDOR_IMAGE}:{src.version}"
    if docker_image_present(vendor):
        src.image, src.image_origin = vendor, "local image"
    elif docker_pull(vendor):
        src.image, src.image_origin = vendor, "vendor registry"
    else:
        src.notes.append(f"image: {vendor} is not present and cannot be pulled")


def discover(version: str, env: dict[str, str] | None = None) -> Source:
    env = dict(os.environ if env is None else env)
    src = Source(version=version)
    find_packages(src, env)
    find_image(src, env)
    return src


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: reachable from every container."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() or "172.17.0.1"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        pass


def serve_directory(directory: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on all addresses; return the server and the URL containers use."""
    handler = partial(_QuietHandler, directory=directory)
    # A fixed port keeps the URL (and so the hosts' apt sources) the same from
    # one run to the next; a second concurrent run falls back to a free port.
    try:
        port = int(os.environ.get("OPENSIPS_MIRROR_PORT", MIRROR_PORT))
        server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)  # noqa: S104
    except OSError:
        server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)  # noqa: S104
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{bridge_gateway()}:{server.server_address[1]}/"


def describe(src: Source) -> str:
    lines = [f"OpenSIPS {src.version} source:"]
    if src.apt_url or src.apt_dir:
        where = src.apt_url or src.apt_dir
        lines.append(f"  packages: {where} suite '{src.apt_suite}' ({src.apt_origin}{', unsigned' if src.apt_trusted else ''})")
    if src.image:
        lines.append(f"  image:    {src.image} ({src.image_origin})")
    if src.upgrade_from:
        lines.append(f"  upgrade:  the package source also holds {src.upgrade_from} (rolling upgrade {src.upgrade_from} -> {src.version})")
    if not src.kinds:
        lines.append(f"  none: {SKIP_REASON}")
    lines += [f"  - {n}" for n in src.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=os.environ.get("OPENSIPS_VERSION", DEFAULT_VERSION))
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("show")
    sub.add_parser("env")
    sub.add_parser("json")
    run = sub.add_parser("exec")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    src = discover(args.version)
    if args.cmd == "show":
        print(describe(src))
        return 0
    if args.cmd in ("env", "json"):
        env = src.environment()
        if src.apt_dir and not src.apt_url:
            env["OPENSIPS_APT_MIRROR"] = src.apt_dir
        print(json.dumps(env, indent=2) if args.cmd == "json" else "\n".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
        return 0

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command")
    server = None
    if src.apt_dir:
        server, src.apt_url = serve_directory(src.apt_dir)
        src.notes.append(f"serving {src.apt_dir} to containers at {src.apt_url}")
    print(describe(src), file=sys.stderr, flush=True)
    try:
        return subprocess.run(command, env={**os.environ, **src.environment()}, check=False).returncode
    finally:
        if server:
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
