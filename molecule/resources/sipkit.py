"""SIP test kit: run SIPp on a testinfra host and read back what happened.

The helpers only run SIPp and parse its own statistics files; they never judge
the outcome. Tests assert on the returned :class:`SippResult`.

SIPp's scenarios live in ``roles/sipp/files`` and are installed by the ``sipp`` role
to :data:`SCENARIO_DIR` on every host that runs them.
"""

from __future__ import annotations

import base64
import math
import shlex
from dataclasses import dataclass, field
from typing import Iterable, Sequence

SCENARIO_DIR = "/usr/local/share/sipkit/scenarios"
STATE_DIR = "/var/lib/sipkit"


@dataclass(frozen=True)
class Account:
    """One line of a UAC injection file: who calls, in which domain, whom."""

    user: str
    domain: str
    password: str = ""
    callee: str = ""

    def csv_line(self) -> str:
        fields = (self.user, self.domain, self.password, self.callee)
        for value in fields:
            if ";" in value or "\n" in value:
                raise ValueError(f"SIPp injection fields cannot contain ';' or newlines: {value!r}")
        return ";".join(fields)


def injection_file(accounts: Sequence[Account]) -> str:
    """SIPp ``-inf`` content: SEQUENTIAL, one account per line."""
    if not accounts:
        raise ValueError("at least one account is needed for an injection file")
    return "SEQUENTIAL\n" + "".join(a.csv_line() + "\n" for a in accounts)


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last (cumulative) row of a SIPp ``-trace_stat`` file, keyed by column."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError("SIPp statistics file has no data row")
    header = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    return dict(zip(header, row))


def parse_rtt_csv(text: str) -> list[float]:
    """Response times in ms from a SIPp ``-trace_rtt`` file (one row per call)."""
    times = []
    for line in text.splitlines():
        parts = line.strip().split(";")
        if len(parts) < 2 or not parts[0] or parts[0].startswith("Date"):
            continue
        times.append(float(parts[1]))
    return times


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _int(stats: dict[str, str], key: str) -> int:
    return int(float(stats.get(key, "0") or 0))


@dataclass
class SippResult:
    """What one SIPp run did, from its exit status and its own statistics."""

    command: str
    rc: int
    stats: dict[str, str]
    response_times_ms: list[float] = field(default_factory=list)
    errors: str = ""
    messages: str = ""             # SIPp's message trace, when asked for (trace_messages=True)

    @property
    def successful(self) -> int:
        return _int(self.stats, "SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return _int(self.stats, "FailedCall(C)")

    @property
    def created(self) -> int:
        return _int(self.stats, "TotalCallCreated")

    @property
    def retransmissions(self) -> int:
        return _int(self.stats, "Retransmissions(C)")

    @property
    def unexpected(self) -> int:
        return _int(self.stats, "FailedUnexpectedMessage(C)")

    @property
    def timeouts(self) -> int:
        return _int(self.stats, "FailedMaxUDPRetrans(C)") + _int(self.stats, "FailedOutboundCongestion(C)")

    def p50(self) -> float:
        return percentile(self.response_times_ms, 50)

    def p99(self) -> float:
        return percentile(self.response_times_ms, 99)

    def summary(self) -> str:
        """One line for assertion messages."""
        return (
            f"rc={self.rc} created={self.created} successful={self.successful} "
            f"failed={self.failed} retrans={self.retransmissions} cmd={self.command}\n{self.errors[-2000:]}"
        )


def sipp_command(
    scenario: str,
    target: str,
    *,
    calls: int = 1,
    rate: float = 10,
    hold_ms: int = 0,
    transport: str = "u1",
    service: str | None = None,
    inf: str | None = None,
    local_ip: str | None = None,
    local_port: int | None = None,
    timeout_s: int = 60,
    recv_timeout_ms: int = 10000,
    trace_messages: bool = False,
    extra: Iterable[str] = (),
) -> list[str]:
    """The SIPp argv for a UAC run whose statistics land in the working directory."""
    argv = [
        "sipp", target,
        "-sf", f"{SCENARIO_DIR}/{scenario}.xml",
        "-t", transport,
        "-m", str(calls),
        "-r", str(rate),
        "-d", str(hold_ms),
        "-nostdin",
        "-timeout", f"{timeout_s}s", "-timeout_error",
        "-recv_timeout", str(recv_timeout_ms),
        "-trace_stat", "-stf", "stat.csv",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", "errors.log",
    ]
    if trace_messages:
        argv += ["-trace_msg", "-message_file", "messages.log"]
    if service:
        argv += ["-s", service]
    if inf:
        argv += ["-inf", inf]
    if local_ip:
        argv += ["-i", local_ip]
    if local_port:
        argv += ["-p", str(local_port)]
    argv += list(extra)
    return argv


def run_sipp(host, scenario: str, target: str, *, accounts: Sequence[Account] = (), **options) -> SippResult:
    """Run a UAC scenario on a testinfra ``host`` and return its statistics.

    ``options`` are passed to :func:`sipp_command` (calls, rate, hold_ms, ...).
    """
    workdir = host.check_output("mktemp -d /tmp/sipkit.XXXXXX")
    try:
        inf = None
        if accounts:
            payload = base64.b64encode(injection_file(accounts).encode()).decode()
            host.check_output(f"echo {payload} | base64 -d > {workdir}/accounts.csv")
            inf = "accounts.csv"
        argv = sipp_command(scenario, target, inf=inf, **options)
        command = " ".join(shlex.quote(a) for a in argv)
        run = host.run(f"cd {workdir} && {command} >/dev/null 2>&1")
        stat_text = host.run(f"cat {workdir}/stat.csv").stdout
        rtt_text = host.run(f"cat {workdir}/*_rtt.csv").stdout
        errors = host.run(f"cat {workdir}/errors.log").stdout
        messages = host.run(f"cat {workdir}/messages.log").stdout if options.get("trace_messages") else ""
    finally:
        host.run(f"rm -rf {workdir}")
    stats = parse_stat_csv(stat_text) if stat_text.strip() else {}
    return SippResult(command=command, rc=run.rc, stats=stats,
                      response_times_ms=parse_rtt_csv(rtt_text), errors=errors, messages=messages)


def uas_invites(host, instance: str) -> int:
    """How many INVITEs the UAS instance ``instance`` (sipp role) has logged."""
    out = host.run(f"grep -c '^INVITE ' {STATE_DIR}/{instance}/calls.log").stdout.strip()
    return int(out or 0)
