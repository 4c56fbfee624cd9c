#!/usr/bin/env python3
"""`make test`: lint, the Python unit tests, then every Molecule scenario.

A scenario that needs OpenSIPS declares it in `molecule/<name>/requires.yml`:

    requires: [opensips]            # any source: packages or image
    requires: [opensips-package]    # an apt mirror
    requires: [opensips-image]      # a Docker image
    requires: ["image:RTPPROXY_IMAGE=sippylabs/rtpproxy:latest"]   # any local image

When the source it needs cannot be found it is reported as
`SKIPPED: <reason>` and counted as skipped, never as passed.

The last line is the summary; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

import opensips_source

ROOT = Path(__file__).resolve().parent.parent
MOLECULE = ROOT / "molecule"


@dataclass
class Outcome:
    name: str
    status: str  # passed | failed | skipped
    seconds: float = 0.0
    reason: str = ""


def banner(text: str) -> None:
    print(f"\n==== {text} ====", flush=True)


def run(name: str, argv: list[str], env: dict[str, str] | None = None) -> Outcome:
    banner(name)
    start = time.monotonic()
    rc = subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
    return Outcome(name, "passed" if rc == 0 else "failed", time.monotonic() - start, "" if rc == 0 else f"exit {rc}")


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in MOLECULE.glob("*/molecule.yml"))


def requirements(name: str) -> list[str]:
    path = MOLECULE / name / "requires.yml"
    if not path.exists():
        return []
    return list((yaml.safe_load(path.read_text()) or {}).get("requires", []))


def missing(needs: list[str], src: opensips_source.Source) -> str:
    """Why ``src`` cannot satisfy ``needs``; empty when it can."""
    kinds = set(src.kinds)
    for need in needs:
        if need == "opensips" and not kinds:
            return opensips_source.SKIP_REASON
        if need == "opensips-package" and "package" not in kinds:
            return "no OpenSIPS package source reachable (set OPENSIPS_APT_MIRROR or provide /srv/opensips-apt)"
        if need == "opensips-image" and "docker" not in kinds:
            return "no OpenSIPS image reachable (set OPENSIPS_IMAGE or load opensips/opensips:<version>)"
        if need.startswith("image:"):
            # image:<ENV_VAR>=<default image>: the image named by the variable (or the default) is present
            var, _, default = need.removeprefix("image:").partition("=")
            image = os.environ.get(var) or default
            if not opensips_source.docker_image_present(image):
                return f"image {image} is not present (load it, or name another with {var})"
    return ""


def run_scenarios(selected: list[str]) -> list[Outcome]:
    src = opensips_source.discover(os.environ.get("OPENSIPS_VERSION", opensips_source.DEFAULT_VERSION))
    server = None
    if src.apt_dir:
        server, src.apt_url = opensips_source.serve_directory(src.apt_dir)
        src.notes.append(f"serving {src.apt_dir} to containers at {src.apt_url}")
    print(opensips_source.describe(src), flush=True)
    env = {**os.environ, **src.environment()}
    outcomes = []
    try:
        for name in selected:
            reason = missing(requirements(name), src)
            if reason:
                banner(f"molecule {name}")
                print(f"SKIPPED: {reason}", flush=True)
                outcomes.append(Outcome(f"molecule {name}", "skipped", reason=reason))
                continue
            outcomes.append(run(f"molecule {name}", ["molecule", "test", "-s", name], env))
    finally:
        if server:
            server.shutdown()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", choices=["lint", "unit", "molecule"],
                        help="run only these stages (default: all)")
    parser.add_argument("--scenario", action="append", help="run only these Molecule scenarios")
    args = parser.parse_args(argv)
    stages = args.stage or ["lint", "unit", "molecule"]

    outcomes: list[Outcome] = []
    if "lint" in stages:
        outcomes.append(run("yamllint", ["yamllint", "--strict", "."]))
        outcomes.append(run("ansible-lint", ["ansible-lint"]))
    if "unit" in stages:
        outcomes.append(run("pytest (unit)", ["pytest"]))
    if "molecule" in stages:
        known = scenarios()
        unknown = sorted(set(args.scenario or []) - set(known))
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
        outcomes += run_scenarios(args.scenario or known)

    banner("results")
    for o in outcomes:
        extra = f" ({o.reason})" if o.reason else ""
        print(f"  {o.status.upper():8} {o.name:32} {o.seconds:7.1f}s{extra}")
    checks = [o for o in outcomes if not o.name.startswith("molecule ")]
    mol = [o for o in outcomes if o.name.startswith("molecule ")]
    count = {s: sum(o.status == s for o in mol) for s in ("passed", "failed", "skipped")}
    failed_checks = [o.name for o in checks if o.status == "failed"]
    print(
        f"SUMMARY: scenarios passed={count['passed']} failed={count['failed']} skipped={count['skipped']}; "
        f"checks {'failed: ' + ', '.join(failed_checks) if failed_checks else 'ok'} ({', '.join(o.name for o in checks) or 'none run'})",
        flush=True,
    )
    return 1 if failed_checks or count["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
