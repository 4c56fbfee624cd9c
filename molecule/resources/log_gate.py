#!/usr/bin/env python3
"""The log gate: an ERROR or CRITICAL line from OpenSIPS, a media relay or
MariaDB is a bug until an allow-list entry proves it is provoked on purpose.

Two steps, one file (the first runs on each host, the second on the controller):

    log_gate.py collect [--since TIME]
        On a host: the journal of the edge's services (and the logs of its
        Docker containers), printed as JSON lines, one per line that looks
        like an error: journal priority err or worse, or a level word such as
        ``ERROR:``/``CRITICAL:`` (OpenSIPS), ``[ERROR]`` (MariaDB) in the text.
        Python 3 standard library only: it is copied to the host and run there.

    log_gate.py judge --context NAME [--allowlist FILE] FILE...
        On the controller: the lines the hosts reported (FILE: JSON lines with
        a "host" key, or one file per host named <host>.jsonl) against the
        allow-list. Prints every line not allowed, with its count, and exits 1
        when there is one.

The allow-list (molecule/log-allowlist.yml) is short on purpose. Each entry:

    - pattern: <regular expression searched in the message, or a list of them>
      contexts: [<scenario or bench step>, ...]   # where it may appear
      test: <the test that provokes it>
      why: <why the line is expected there>
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# systemd units (journal) and the Docker containers of the edge's daemons
UNITS = ("opensips", "rtpengine-daemon", "mariadb", "rtpproxy-sipedge")
# a level word in the text: OpenSIPS "ERROR:acc:...", "CRITICAL:db_mysql:...",
# syslog-style "ERR:"/"CRIT:", MariaDB "[ERROR]"
LEVEL_WORD = re.compile(r"(?:^|[\s\]\[])(?:CRITICAL|ERROR|ERR|CRIT|ALERT|EMERG):|\[ERROR\]")
# journal priorities 0 emerg .. 3 err
WORST_PRIORITY = 3
# a line's variable parts, folded so that repeats count as one
VOLATILE = re.compile(r"0x[0-9a-f]+|\b\d+\b|[0-9a-f]{8,}", re.I)


def is_error(priority: int | None, message: str) -> bool:
    return (priority is not None and priority <= WORST_PRIORITY) or bool(LEVEL_WORD.search(message))


def _journal(since: str | None, units: tuple[str, ...] = UNITS):
    if not shutil.which("journalctl"):
        return
    argv = ["journalctl", "--no-pager", "-o", "json"]
    for unit in units:
        argv += ["-u", unit]
    if since:
        argv += ["--since", since]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if not isinstance(message, str):
            continue  # binary payloads are not log lines of ours
        unit = entry.get("_SYSTEMD_UNIT") or entry.get("UNIT") or "?"
        if entry.get("_PID") == "1" or unit == "init.scope":
            continue  # systemd's own messages about the unit (start/stop): not the daemon
        priority = int(entry["PRIORITY"]) if str(entry.get("PRIORITY", "")).isdigit() else None
        yield unit.removesuffix(".service"), priority, message


def _containers(since: str | None):
    if not shutil.which("docker"):
        return
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=False).stdout.split()
    for name in names:
        # docker reads RFC 3339 ("2026-12-01T03:04:05"), journalctl the same with a space
        argv = ["docker", "logs", name] + (["--since", since.replace(" ", "T")] if since else [])
        run = subprocess.run(argv, capture_output=True, text=True, check=False)
        for message in (run.stdout + run.stderr).splitlines():
            yield f"docker:{name}", None, message


def collect(since: str | None, units: tuple[str, ...] = ()) -> int:
    for source, priority, message in list(_journal(since, UNITS + units)) + list(_containers(since)):
        if is_error(priority, message):
            print(json.dumps({"source": source, "priority": priority, "message": message}))
    return 0


# --- on the controller ---------------------------------------------------------------------

def collect_from(host, since: str | None = None, units: tuple[str, ...] = ()) -> list[dict]:
    """Run ``collect`` on a testinfra ``host`` (the toolkit's daemons, plus the systemd ``units``
    given): this file is copied over once, by the tests' own helper for the toolkit's
    standard-library scripts."""
    from opensips_checks import push_script  # noqa: PLC0415 - controller side only (molecule/resources)

    argv = "collect" + (f" --since '{since}'" if since else "") + "".join(f" --unit {u}" for u in units)
    run = host.run(f"python3 {push_script(host, Path(__file__))} {argv}")
    if run.rc != 0:
        raise RuntimeError(f"log gate: collect failed (rc {run.rc}): {run.stderr[-1000:]}")
    return [json.loads(x) for x in run.stdout.splitlines() if x.strip()]


def load_allowlist(path: Path) -> list[dict]:
    import yaml  # the controller's venv has it; collect() must not need it

    entries = yaml.safe_load(path.read_text()) or []
    for i, entry in enumerate(entries):
        missing = {"pattern", "contexts", "test", "why"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: entry {i + 1} lacks {sorted(missing)}")
        patterns = entry["pattern"] if isinstance(entry["pattern"], list) else [entry["pattern"]]
        entry["regex"] = re.compile("|".join(f"(?:{p})" for p in patterns))
    return entries


def read_lines(files: list[Path]) -> list[dict]:
    lines = []
    for path in files:
        for raw in path.read_text().splitlines():
            if raw.strip():
                line = json.loads(raw)
                line.setdefault("host", path.stem)
                lines.append(line)
    return lines


def judge(lines: list[dict], allowlist: list[dict], context: str) -> tuple[Counter, Counter]:
    """(allowed per entry test, refused per (host, source, first line of each folded kind))."""
    allowed: Counter = Counter()
    refused: Counter = Counter()
    first: dict = {}  # folded message -> the first line seen of that kind, which the report shows
    for line in lines:
        entry = next((e for e in allowlist
                      if context in e["contexts"] and e["regex"].search(line["message"])), None)
        if entry:
            allowed[entry["test"]] += 1
            continue
        example = first.setdefault((line["host"], line["source"], VOLATILE.sub("#", line["message"])), line["message"])
        refused[(line["host"], line["source"], example)] += 1
    return allowed, refused


def report(context: str, allowed: Counter, refused: Counter) -> str:
    out = [f"log gate ({context}): {sum(allowed.values()) + sum(refused.values())} error line(s), "
           f"{sum(allowed.values())} on the allow-list, {sum(refused.values())} not"]
    for test, count in sorted(allowed.items()):
        out.append(f"  allowed x{count}: provoked by {test}")
    for (host, source, message), count in refused.most_common(40):
        out.append(f"  REFUSED x{count} {host} {source}: {message[:400]}")
    if len(refused) > 40:
        out.append(f"  ... and {len(refused) - 40} more kinds of line")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("collect", help="on a host: its error lines as JSON lines")
    c.add_argument("--since", help="journalctl/docker --since (default: everything)")
    c.add_argument("--unit", action="append", default=[], help="one more systemd unit to read (repeatable)")
    j = sub.add_parser("judge", help="on the controller: error lines against the allow-list")
    j.add_argument("--context", required=True, help="scenario or bench step the lines come from")
    j.add_argument("--allowlist", type=Path,
                   default=Path(__file__).resolve().parents[1] / "log-allowlist.yml")
    j.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.step == "collect":
        return collect(args.since, tuple(args.unit))
    allowed, refused = judge(read_lines(args.files), load_allowlist(args.allowlist), args.context)
    print(report(args.context, allowed, refused))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
