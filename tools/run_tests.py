#!/usr/bin/env python3
"""`make test`: lint, the Python unit tests, then every Molecule scenario.

A scenario that needs OpenSIPS declares it in `molecule/<name>/requires.yml`:

    requires: [opensips]            # any source: packages or image
    requires: [opensips-package]    # an apt mirror
    requires: [opensips-image]      # a Docker image
    requires: ["image:RTPPROXY_IMAGE=sippylabs/rtpproxy:latest"]   # any local image

When the source it needs cannot be found it is reported as
`SKIPPED: <reason>` and counted as skipped, never as passed.

Lint, the unit tests and the scenarios run as jobs, two at a time by default
(`--jobs`, or `SIPEDGE_TEST_JOBS`): each scenario has its own network and
container names, so they do not meet. The longest run first. A job's output
goes to `build/logs/<job>.log` and is printed whole when the job ends, so
the log of one job is never interleaved with another's.

The last line is the summary; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

import opensips_source

ROOT = Path(__file__).resolve().parent.parent
MOLECULE = ROOT / "molecule"
LOGS = ROOT / "build" / "logs"
DURATIONS = ROOT / "build" / "test-durations.json"
# How long each job took on the 2-core reference machine (seconds). Only the
# order depends on it: the longest start first, so the lanes end together.
# A run on this machine replaces these with its own (build/test-durations.json).
EXPECTED_SECONDS = {
    "yamllint": 10, "ansible-lint": 90, "pytest (unit)": 350,
    "molecule full-stack": 750, "molecule opensips-db": 590, "molecule rolling-upgrade": 530,
    "molecule freeswitch-acl": 410, "molecule opensips-docker": 400, "molecule opensips-package": 320,
    "molecule edge-tls-firewall": 260, "molecule media-relay": 250, "molecule rtpproxy": 180,
    "molecule cluster": 1300,
    "molecule sipkit": 140,
}
_print_lock = threading.Lock()


@dataclass
class Outcome:
    name: str
    status: str  # passed | failed | skipped
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Job:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    skip: str = ""  # why it cannot run; empty when it can


def banner(text: str) -> None:
    print(f"\n==== {text} ====", flush=True)


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def log_path(name: str) -> Path:
    return LOGS / (name.replace(" ", "-").replace("(", "").replace(")", "") + ".log")


def run(job: Job) -> Outcome:
    if job.skip:
        with _print_lock:
            banner(job.name)
            print(f"SKIPPED: {job.skip}", flush=True)
        return Outcome(job.name, "skipped", reason=job.skip)
    path = log_path(job.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    say(f"[{time.strftime('%H:%M:%S')}] started  {job.name} (log: {os.path.relpath(path, ROOT)})")
    start = time.monotonic()
    with path.open("w") as out:
        rc = subprocess.run(job.argv, cwd=ROOT, env=job.env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, check=False).returncode
    outcome = Outcome(job.name, "passed" if rc == 0 else "failed", time.monotonic() - start,
                      "" if rc == 0 else f"exit {rc}")
    with _print_lock:
        banner(f"{job.name}: {outcome.status} in {outcome.seconds:.0f}s")
        sys.stdout.write(path.read_text(errors="replace"))
        print(f"==== end of {job.name} ====", flush=True)
    return outcome


# what a failed job's log says about why, repeated under the results (a CI log is often read from its tail)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FRAME = re.compile(r"^\s*│ ?")
_FAILURE_LINE = re.compile(r"^(FAILED |ERROR |E   |fatal: |failed: |CRITICAL |.*\bTraceback\b|.*log gate)")


def failure_digest(path: Path, limit: int = 25) -> list[str]:
    """The lines of a failed job's log that name what failed: pytest's FAILED/ERROR lines, Ansible's
    fatal lines and the log gate's verdict, after the last assertion lines (about ``limit`` in all)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    # molecule frames its output (colour codes, a "│ " gutter)
    lines = [_FRAME.sub("", _ANSI.sub("", line)) for line in lines]
    found = [line[:400] for line in lines if _FAILURE_LINE.match(line)]
    # the verdicts (FAILED, fatal, the log gate) all, then as many assertion lines as fit before them
    verdicts = [line for line in found if not line.startswith("E ")][-limit:]
    details = [line for line in found if line.startswith("E ")][-max(5, limit - len(verdicts)):]
    return details + verdicts


def expected_seconds() -> dict[str, float]:
    known = dict(EXPECTED_SECONDS)
    try:
        known.update(json.loads(DURATIONS.read_text()))
    except (OSError, ValueError):
        pass
    return known


def run_jobs(jobs: list[Job], lanes: int) -> list[Outcome]:
    """Run ``jobs`` ``lanes`` at a time, longest first; outcomes in the jobs' own order."""
    weight = expected_seconds()
    order = sorted(range(len(jobs)), key=lambda i: -weight.get(jobs[i].name, 300))
    results: dict[int, Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, lanes)) as pool:
        futures = {i: pool.submit(run, jobs[i]) for i in order}
        for i, fut in futures.items():
            results[i] = fut.result()
    outcomes = [results[i] for i in range(len(jobs))]
    weight.update({o.name: round(o.seconds) for o in outcomes if o.status != "skipped"})
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(json.dumps(weight, indent=1, sort_keys=True) + "\n")
    return outcomes


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


def scenario_jobs(selected: list[str], src: opensips_source.Source) -> list[Job]:
    # wide, plain output: a failure's lines are not folded at 80 columns nor coloured in the logs
    env = {**os.environ, **src.environment(), "COLUMNS": "240", "NO_COLOR": "1"}
    return [Job(f"molecule {name}", ["molecule", "test", "-s", name], env, skip=missing(requirements(name), src))
            for name in selected]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", choices=["lint", "unit", "molecule"],
                        help="run only these stages (default: all)")
    parser.add_argument("--scenario", action="append", help="run only these Molecule scenarios")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SIPEDGE_TEST_JOBS", "2")),
                        help="how many jobs run at once (default 2, or SIPEDGE_TEST_JOBS)")
    args = parser.parse_args(argv)
    stages = args.stage or ["lint", "unit", "molecule"]

    jobs: list[Job] = []
    if "lint" in stages:
        jobs.append(Job("yamllint", ["yamllint", "--strict", "."]))
        jobs.append(Job("ansible-lint", ["ansible-lint"]))
    if "unit" in stages:
        jobs.append(Job("pytest (unit)", ["pytest"]))
    server = None
    if "molecule" in stages:
        known = scenarios()
        unknown = sorted(set(args.scenario or []) - set(known))
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
        src = opensips_source.discover(os.environ.get("OPENSIPS_VERSION", opensips_source.DEFAULT_VERSION))
        if src.apt_dir:
            server, src.apt_url = opensips_source.serve_directory(src.apt_dir)
            src.notes.append(f"serving {src.apt_dir} to containers at {src.apt_url}")
        print(opensips_source.describe(src), flush=True)
        jobs += scenario_jobs(args.scenario or known, src)
    print(f"running {len(jobs)} jobs, {args.jobs} at a time", flush=True)
    try:
        outcomes = run_jobs(jobs, args.jobs)
    finally:
        if server:
            server.shutdown()

    banner("results")
    for o in outcomes:
        extra = f" ({o.reason})" if o.reason else ""
        print(f"  {o.status.upper():8} {o.name:32} {o.seconds:7.1f}s{extra}")
    for o in outcomes:
        if o.status == "failed":
            print(f"\n---- why {o.name} failed (from {os.path.relpath(log_path(o.name), ROOT)}) ----")
            print("\n".join(failure_digest(log_path(o.name))) or "(no failure lines found; read the log)")
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
