#!/usr/bin/env python3
"""Benchmarks of a deployed SIP edge: a table of numbers, never a pass/fail test.

    make bench                                   # the lab: every measure below
    python benchmarks/sip_edge_bench.py -i inventories/production --only sip --no-baseline

Measures (each printed with the machine and the versions it was taken on; ratios
compare numbers from this one run on this one box):

* REGISTER/s with digest auth and calls/s (CPS) through the proxy: the highest
  rate SIPp sustains for ``--duration`` seconds with 0 failed calls and
  retransmissions under 0.1 % of the calls, found by doubling then bisecting;
  p50/p99 response times from SIPp's own response-time statistics (REGISTER ->
  200 and INVITE -> 200, the digest challenge round included).
* The same SIPp load against a bare stateless relay (``forward()`` only, no auth,
  no transaction, dialog, database or media relay) run by the same OpenSIPS
  binary on the same proxy container (port 5090), forwarding INVITEs to the same
  media servers and REGISTERs to a SIPp digest registrar on the first one; the
  ratio edge / relay is printed. It opens those two ports in nftables for the
  run only (rules commented "sipedge-bench", removed at the end);
  ``--no-baseline`` leaves the hosts alone.
* Lab only (it destroys and recreates the lab's containers): ``site.yml`` on
  fresh containers, then again (must report changed=0), wall seconds and ratio;
  ``make lab`` from no container to a passing call.

The load comes from the first host of ``sip_clients`` (``--client``), which must
be in the proxy's ``opensips_pike_exempt_networks`` or pike caps the rate at its
own limit. Accounts, domain and callee come from the inventory (vault included:
set ANSIBLE_VAULT_PASSWORD_FILE).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import log_gate  # the test kit's log gate (pyproject.toml, installed in .venv): ERROR/CRITICAL lines beyond the allow-list
import sipkit  # the test kit's SIPp helpers
import testinfra

ROOT = Path(__file__).resolve().parents[1]

BENCH_TAG = "sipedge-bench"
RELAY_PORT = 5090
REGISTRAR_PORT = 5070
RELAY_UNIT = f"{BENCH_TAG}-relay"
MAX_RETRANS_RATIO = 0.001  # retransmissions < 0.1 % of the calls


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- inventory and hosts -------------------------------------------------------------

def ansible_value(inventory: str, host: str, expr: str):
    """``expr`` (Jinja) as Ansible evaluates it for ``host``, decoded from JSON."""
    run = subprocess.run(["ansible", host, "-i", inventory, "-o", "-m", "ansible.builtin.debug",
                          "-a", "msg={{ " + expr + " | to_json }}"],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    if run.returncode != 0 or "=>" not in run.stdout:
        raise SystemExit(f"cannot read {expr!r} for {host} from {inventory}:\n{run.stdout[-1500:]}{run.stderr[-1500:]}")
    data = json.loads(run.stdout.split("=>", 1)[1])["msg"]
    return json.loads(data) if isinstance(data, str) else data


def groups(inventory: str) -> dict[str, list[str]]:
    run = subprocess.run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    data = json.loads(run.stdout)
    return {g: body.get("hosts", []) for g, body in data.items() if isinstance(body, dict)}


def remote(name: str, inventory: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)


# --- what a table row records ------------------------------------------------------

def machine() -> str:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True, check=False).stdout.strip() or "n/a"
    return (f"{platform.machine()}, {os.cpu_count()} CPU ({model}), {mem_kib / 1048576:.0f} GiB, "
            f"Linux {platform.release()}, Docker {docker}")


def first_line(host, command: str) -> str:
    out = host.run(command)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "n/a"


def versions(inventory: str, hosts: dict[str, str]) -> str:
    proxy = remote(hosts["proxy"], inventory)
    opensips = first_line(proxy, "opensips -V")
    parts = [opensips, first_line(remote(hosts["client"], inventory), "sipp -v | grep -o 'SIPp v[^ ,-]*'")]
    if hosts.get("db"):
        db = first_line(remote(hosts["db"], inventory), "mariadb --version || mysql --version")
        parts.append(re.sub(r"^.*Distrib ([^,]+),.*$", r"MariaDB/MySQL \1", db))
    if hosts.get("relay"):
        parts.append("rtpengine " + first_line(remote(hosts["relay"], inventory), "rtpengine --version 2>&1"))
    ansible = subprocess.run(["ansible", "--version"], capture_output=True, text=True, check=False).stdout
    parts.append(ansible.splitlines()[0] if ansible else "ansible n/a")
    return "; ".join(parts)


# --- what one load step cost and left behind ---------------------------------------------

def container_cpu_ns(name: str) -> int | None:
    """CPU nanoseconds a local container has used, from its cgroup (v1 cpuacct or v2 cpu.stat)."""
    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True,
                         check=False).stdout.strip()
    if not cid:
        return None
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage"):
        if Path(path).exists():
            return int(Path(path).read_text())
    for path in (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"):
        if Path(path).exists():
            usage = re.search(r"^usage_usec (\d+)", Path(path).read_text(), re.M)
            return int(usage.group(1)) * 1000 if usage else None
    return None


class Probe:
    """Around one load step: CPU per component (the lab's containers' cgroups), the calls rtpengine
    anchored (its own session totals) and the error lines of the proxy, relay and database (the tests'
    log gate, allow-list context "bench")."""

    def __init__(self, inventory: str, hosts: dict[str, str | None], proxy_units: tuple[str, ...] = ()):
        self.proxy_units = proxy_units  # more systemd units on the proxy host whose errors count (the bare relay)
        self.hosts = {role: name for role, name in hosts.items() if name}
        self.remotes = {role: remote(name, inventory) for role, name in self.hosts.items()}
        self.allowlist = log_gate.load_allowlist(ROOT / "molecule" / "log-allowlist.yml")
        self.since, self.cpu0, self.sessions0 = "", {}, None

    def cpu(self) -> dict[str, int]:
        found = {role: container_cpu_ns(name) for role, name in self.hosts.items()}
        return {role: ns for role, ns in found.items() if ns is not None}

    def relay_sessions(self) -> int | None:
        """Sessions rtpengine has managed and finished (its totals count a call once it is deleted)."""
        relay = self.remotes.get("relay")
        if not relay:
            return None
        out = relay.run("rtpengine-ctl list totals").stdout
        found = re.search(r"Total managed sessions\s*:\s*(\d+)", out)
        return int(found.group(1)) if found else None

    def relay_busy(self) -> int:
        out = self.remotes["relay"].run("rtpengine-ctl list numsessions").stdout
        return sum(int(n) for n in re.findall(r"Current sessions (?:own|foreign)\s*:\s*(\d+)", out))

    def start(self) -> None:
        if "relay" in self.remotes:
            # a step starts on an idle relay: a failed step's calls end only at the proxy's and the relay's
            # timeouts (fr_inv_timeout, then delete-delay), and counted in the next step they made it look
            # like it anchored more calls than it placed (2402/2400)
            deadline = time.monotonic() + 120
            while self.relay_busy() and time.monotonic() < deadline:
                time.sleep(2)
        self.since = self.remotes["proxy"].check_output("date -u '+%Y-%m-%d %H:%M:%S'").strip()
        self.cpu0 = self.cpu()
        self.sessions0 = self.relay_sessions()

    def stop(self, calls: int, kind: str) -> dict:
        cpu = self.cpu()
        anchored = None
        if kind == "call" and self.sessions0 is not None:
            # a deleted call's session ends after rtpengine's delete-delay: wait for the relay to drain
            deadline = time.monotonic() + 40
            while self.relay_busy() and time.monotonic() < deadline:
                time.sleep(1)
            anchored = self.relay_sessions() - self.sessions0
        lines = []
        for role in ("proxy", "relay", "db"):
            if role in self.remotes:
                units = self.proxy_units if role == "proxy" else ()
                lines += [dict(line, host=self.hosts[role])
                          for line in log_gate.collect_from(self.remotes[role], self.since, units)]
        _, refused = log_gate.judge(lines, self.allowlist, "bench")
        return {"cpu_ms_per_call": {role: (cpu[role] - self.cpu0[role]) / 1e6 / max(calls, 1)
                                    for role in cpu if role in self.cpu0},
                "anchored": anchored, "errors": sum(refused.values()),
                "error_kinds": [m for (_, _, m), _ in refused.most_common(3)]}


# --- SIP load -----------------------------------------------------------------------

def passed(result: sipkit.SippResult, calls: int, probe: dict | None = None) -> bool:
    """An honest step: every call completed, retransmissions under 0.1 %, and (edge steps) no error
    line in the logs and every call anchored by the relay."""
    honest = (result.successful == calls and result.failed == 0
              and result.retransmissions < MAX_RETRANS_RATIO * calls)
    if probe:
        honest = honest and probe["errors"] == 0 and probe["anchored"] in (None, calls)
    return honest


def highest_rate(label: str, run_at, start: int, ceiling: int, bisect_steps: int = 3):
    """Double the rate from ``start`` until a run fails, then bisect: (rate, SIPp result, capped by the
    ceiling) of the best passing run, None when even ``start`` fails."""
    best, failing, rate = None, None, start
    while rate <= ceiling:
        ok, result = run_at(rate)
        log(f"{label}: {rate}/s {'ok' if ok else 'FAILED'} ({result.summary().splitlines()[0]})")
        if not ok:
            failing = rate
            break
        best = (rate, result)
        rate *= 2
    if failing is None and best:
        log(f"{label}: no failure up to --ceiling {ceiling}/s")
        return best[0], best[1], True
    low = best[0] if best else 0
    if failing is not None:
        for _ in range(bisect_steps):
            mid = (low + failing) // 2
            if mid <= low or failing - low < max(2, low // 20):
                break
            ok, result = run_at(mid)
            log(f"{label}: {mid}/s {'ok' if ok else 'FAILED'} ({result.summary().splitlines()[0]})")
            if ok:
                best, low = (mid, result), mid
            else:
                failing = mid
    return (best[0], best[1], False) if best else None


def load(client, kind: str, target: str, accounts, callee_hold_ms: int, duration: int, rate: int,
         probe: Probe | None = None):
    calls = max(1, rate * duration)
    scenario = "register_auth" if kind == "register" else "uac_call"
    if probe:
        probe.start()
    result = sipkit.run_sipp(client, scenario, target, accounts=accounts, calls=calls, rate=rate,
                             hold_ms=0 if kind == "register" else callee_hold_ms,
                             timeout_s=duration * 4 + 60, recv_timeout_ms=5000,
                             extra=["-l", str(max(100, rate * 10))])
    time.sleep(3)  # let the proxy's timers and the media servers settle between runs
    measured = probe.stop(calls, kind) if probe else None
    result.probe = measured
    if measured:
        cpu = ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(measured["cpu_ms_per_call"].items()))
        log(f"  CPU ms per call: {cpu}; anchored {measured['anchored']}/{calls}; "
            f"error lines {measured['errors']} {measured['error_kinds']}")
    return passed(result, calls, measured), result


def relay_config(proxy_ip: str, core_ip: str, media: list[str], registrar: str, workers: int, mpath: str) -> str:
    """The bare stateless relay: what every SIP proxy does at least, nothing more. Like the edge,
    it takes the phones on ``proxy_ip`` and reaches the core (media servers, registrar) from
    ``core_ip``, its internal address, when that differs."""
    core_socket = f"socket=udp:{core_ip}:{RELAY_PORT}" if core_ip != proxy_ip else ""
    to_core = f'force_send_socket("udp:{core_ip}:{RELAY_PORT}");' if core_ip != proxy_ip else ""
    return f"""# {BENCH_TAG}: bare stateless relay (benchmarks/sip_edge_bench.py), removed after the run
log_level=1
stderror_enabled=no
syslog_enabled=yes
udp_workers={workers}
socket=udp:{proxy_ip}:{RELAY_PORT}
{core_socket}
mpath="{mpath}"
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "proto_udp.so"

route {{
	if (!mf_process_maxfwd_header(10)) {{
		sl_send_reply(483, "Too Many Hops");
		exit;
	}}
	if (has_totag() && loose_route()) {{
		forward();
		exit;
	}}
	if (is_method("REGISTER")) {{
		$du = "{registrar}";
		{to_core}
		forward();
		exit;
	}}
	# an in-dialog request without a Route (the ACK of a negative reply) goes where its
	# INVITE went, by the same Call-ID hash: never to a DNS lookup of the R-URI's domain
	if (!has_totag())
		record_route();
	if ($(ci{{s.md5}}{{s.substr,0,1}}) =~ "^[0-7]")
		$du = "{media[0]}";
	else
		$du = "{media[-1]}";
	{to_core}
	forward();
	exit;
}}
"""


def nft_open(host, source: str, port: int) -> bool:
    """Accept UDP ``port`` from ``source`` in the sip_firewall table, if there is one."""
    if host.run("nft list chain inet sipedge input").rc != 0:
        return False
    host.check_output(f"nft insert rule inet sipedge input ip saddr {source} udp dport {port} accept "
                      f"comment '\"{BENCH_TAG}\"'")
    return True


def nft_close(host) -> None:
    host.run(f"nft -a list chain inet sipedge input | sed -n 's/.*{BENCH_TAG}.*# handle \\([0-9]*\\)$/\\1/p' "
             "| xargs -r -n1 nft delete rule inet sipedge input handle")


class Baseline:
    """A bare stateless OpenSIPS on the proxy and a SIPp digest registrar on the first media server."""

    def __init__(self, proxy, fs, proxy_ip, core_ip, fs_ip, client_ip, media_uris, accounts):
        self.proxy, self.fs = proxy, fs
        self.proxy_ip, self.core_ip, self.fs_ip, self.client_ip = proxy_ip, core_ip, fs_ip, client_ip
        self.media_uris, self.accounts = media_uris, accounts

    def __enter__(self):
        self.__exit__()  # what an interrupted run may have left
        try:
            return self._start()
        except Exception as err:
            self.__exit__()
            raise RuntimeError(str(err)) from err

    def _start(self) -> str:
        binary = self.proxy.run("command -v opensips").stdout.strip()
        if not binary:
            raise RuntimeError("the proxy has no opensips binary (docker mode): the baseline needs the package")
        mpath = self.proxy.check_output("dirname $(find /usr/lib -path '*opensips/modules/sl.so' | head -1)")
        workers = self.proxy.run("sed -n 's/^udp_workers=//p' /etc/opensips/opensips.cfg").stdout.strip() or "4"
        cfg = relay_config(self.proxy_ip, self.core_ip, self.media_uris, f"sip:{self.fs_ip}:{REGISTRAR_PORT}", int(workers), mpath)
        self.proxy.check_output(f"mkdir -p /tmp/{BENCH_TAG} && echo {shlex.quote(cfg)} > /tmp/{BENCH_TAG}/relay.cfg")
        check = self.proxy.run(f"opensips -C -f /tmp/{BENCH_TAG}/relay.cfg")
        if check.rc != 0:
            raise RuntimeError(f"the relay config does not parse: {check.stderr[-800:]}")
        for source in [self.client_ip] + [re.sub(r"^sips?:([^:;]+).*$", r"\1", u) for u in self.media_uris]:
            nft_open(self.proxy, source, RELAY_PORT)
        nft_open(self.fs, self.core_ip, REGISTRAR_PORT)
        # a transient unit: its log lines are read by the step's log gate like the edge's
        self.proxy.check_output(f"systemd-run --unit {RELAY_UNIT} --collect -p Type=forking "
                                f"-p PIDFile=/tmp/{BENCH_TAG}/relay.pid {binary} -f /tmp/{BENCH_TAG}/relay.cfg "
                                f"-P /tmp/{BENCH_TAG}/relay.pid -m 256 -M 32")
        users = "\n".join(f"{a.user};{a.domain};{a.password}" for a in self.accounts)
        self.fs.check_output(f"mkdir -p /tmp/{BENCH_TAG} && printf 'SEQUENTIAL\\n%s\\n' {shlex.quote(users)} "
                             f"> /tmp/{BENCH_TAG}/users.csv")
        # SIPp's -bg exits 99 once the background instance runs: check the process instead
        self.fs.run(f"cd /tmp/{BENCH_TAG} && sipp -sf {sipkit.SCENARIO_DIR}/uas_registrar_auth.xml "
                    f"-i {self.fs_ip} -p {REGISTRAR_PORT} -inf users.csv -infindex users.csv 0 -bg >/dev/null 2>&1")
        time.sleep(2)
        if self.fs.run(f"pgrep -f '[s]ipp -sf .*uas_registrar_auth.xml .*-p {REGISTRAR_PORT}'").rc != 0:
            raise RuntimeError("the SIPp registrar did not start on the media server")
        if self.proxy.run(f"kill -0 $(cat /tmp/{BENCH_TAG}/relay.pid)").rc != 0:
            raise RuntimeError("the relay did not start")
        return f"{self.proxy_ip}:{RELAY_PORT}"

    def __exit__(self, *exc):
        self.proxy.run(f"systemctl stop {RELAY_UNIT} 2>/dev/null; pkill -f '[o]pensips -f /tmp/{BENCH_TAG}/'; "
                       f"sleep 1; rm -rf /tmp/{BENCH_TAG}")
        self.fs.run(f"pkill -f '[s]ipp -sf .*uas_registrar_auth.xml .*-p {REGISTRAR_PORT}'; rm -rf /tmp/{BENCH_TAG}")
        nft_close(self.proxy)
        nft_close(self.fs)


# --- deploy timings (lab only) -------------------------------------------------------

def timed(argv: list[str], label: str) -> tuple[float, str]:
    log(f"{label}: {' '.join(argv)}")
    start = time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    elapsed = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit(f"{label} failed (rc={run.returncode}):\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
    return elapsed, run.stdout


def changed_total(recap: str) -> int:
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", recap.split("PLAY RECAP", 1)[-1]))


def deploy_timings(inventory: str) -> dict:
    playbook = ["ansible-playbook", "-i", inventory]
    timed(playbook + ["playbooks/lab-destroy.yml"], "remove the lab")
    timed(playbook + ["playbooks/lab-containers.yml"], "fresh lab containers")
    # what a FreeSWITCH installation leaves on a media server (freeswitch_acl edits its tree)
    timed(["ansible", "media_servers", "-i", inventory, "-m", "ansible.builtin.file",
           "-a", "path=/etc/freeswitch/autoload_configs state=directory mode=0755"], "FreeSWITCH's config tree")
    first, _ = timed(playbook + ["playbooks/site.yml"], "site.yml, first run")
    second, out = timed(playbook + ["playbooks/site.yml"], "site.yml, second run")
    changed = changed_total(out)
    timed(playbook + ["playbooks/lab-destroy.yml"], "remove the lab")
    lab, out = timed(["make", "lab"], "make lab from nothing")
    smoke = re.search(r"Smoke calls from the lab phone through the proxy: (\d+)/(\d+) completed", out)
    return {"site_first": first, "site_second": second, "site_changed": changed, "lab": lab,
            "lab_call": f"{smoke.group(1)}/{smoke.group(2)}" if smoke else "no call through the proxy"}


# --- the report -------------------------------------------------------------------------

def fmt_rate(best) -> str:
    if not best:
        return "below the start rate"
    return f">= {best[0]} (ceiling)" if best[2] else f"{best[0]}"


def fmt_times(best) -> str:
    if not best or not best[1].response_times_ms:
        return "n/a"
    return " / ".join(f"{v:.0f}" if v >= 1 else "<1" for v in (best[1].p50(), best[1].p99()))


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def cpu_table(sip: dict) -> list[str]:
    """CPU milliseconds per call (or REGISTER) of each component at each best rate, from the lab's
    container cgroups, with the relay's anchored-call count and the error lines of that step."""
    measured = {k: v[1].probe for k, v in sip.items() if v and getattr(v[1], "probe", None)}
    if not measured:
        return []
    roles = sorted({r for m in measured.values() for r in m["cpu_ms_per_call"]},
                   key=lambda r: ["proxy", "relay", "db", "client"].index(r) if r in ("proxy", "relay", "db", "client") else 9)
    rows = ["", "CPU milliseconds per call (per REGISTER) at the best rate, from each container's cgroup:", "",
            "| Step | Rate | " + " | ".join(roles) + " | all | anchored | error lines |",
            "|---|---|" + "---|" * (len(roles) + 3)]
    for key, m in measured.items():
        cpu = m["cpu_ms_per_call"]
        calls = sip[key][1].created
        anchored = "n/a" if m["anchored"] is None else f"{m['anchored']}/{calls}"
        rows.append(f"| {key.replace('_', ' ')} | {sip[key][0]}/s | "
                    + " | ".join(f"{cpu[r]:.2f}" if r in cpu else "-" for r in roles)
                    + f" | {sum(cpu.values()):.2f} | {anchored} | {m['errors']} |")
    edge, base = measured.get("call"), measured.get("call_baseline")
    if edge and "proxy" in edge["cpu_ms_per_call"]:
        per_call = edge["cpu_ms_per_call"]["proxy"]
        rows += ["", f"- One dedicated core (1000 ms/s) carries about {1000 / per_call:.0f} calls/s of OpenSIPS "
                     f"work at {per_call:.2f} ms per call"
                 + (f" (the bare relay: {base['cpu_ms_per_call'].get('proxy', 0):.2f} ms)" if base else "")
                 + "; the whole edge on this box shares its cores with everything in the table."]
    return rows


def report(meta: dict, sip: dict, deploy: dict | None, notes: list[str]) -> str:
    rows = [f"## SIP edge benchmark, {meta['date']}", "",
            f"- Machine: {meta['machine']} (every container and SIPp on this one box)",
            f"- Versions: {meta['versions']}",
            f"- Inventory: {meta['inventory']}; load from {meta['client']} for {meta['duration']} s per step, "
            f"calls held {meta['hold_ms']} ms", "",
            "| Measure | Edge proxy | Bare stateless relay | Edge / relay |",
            "|---|---|---|---|"]
    for kind, title, unit in (("register", "REGISTER/s with digest auth", "REGISTER -> 200"),
                              ("call", "Calls/s (CPS)", "INVITE -> 200")):
        edge, base = sip.get(kind), sip.get(f"{kind}_baseline")
        base_text = fmt_rate(base) if f"{kind}_baseline" in sip else "not run"
        rows.append(f"| {title}, 0 failed, retrans < 0.1% | {fmt_rate(edge)} | {base_text} | "
                    f"{ratio(edge and edge[0], base and base[0])} |")
        rows.append(f"| {unit} p50 / p99 (ms) at that rate | {fmt_times(edge)} | "
                    f"{fmt_times(base) if f'{kind}_baseline' in sip else 'not run'} | |")
    rows += cpu_table(sip)
    if deploy:
        rows += ["", "| Deploy (lab) | Seconds |", "|---|---|",
                 f"| site.yml, first run on fresh containers | {deploy['site_first']:.0f} |",
                 f"| site.yml, second run (changed={deploy['site_changed']}) | {deploy['site_second']:.0f} |",
                 f"| second / first | {deploy['site_second'] / deploy['site_first']:.2f} |",
                 f"| make lab, no container to a passing call ({deploy['lab_call']} smoke calls) | {deploy['lab']:.0f} |"]
    rows += [""] + [f"- {n}" for n in notes]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab")
    parser.add_argument("--only", choices=["sip", "deploy"], help="one part only (default: both, deploy for the lab)")
    parser.add_argument("--client", help="host that runs SIPp (default: first of sip_clients)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load step")
    parser.add_argument("--hold-ms", type=int, default=1000, help="how long each call lasts")
    parser.add_argument("--register-start", type=int, default=50)
    parser.add_argument("--call-start", type=int, default=20)
    parser.add_argument("--ceiling", type=int, default=6400)
    parser.add_argument("--no-baseline", action="store_true", help="do not start the stateless relay")
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"), help="where the table is also written")
    args = parser.parse_args()
    inventory = str((ROOT / args.inventory).resolve()) if not Path(args.inventory).is_absolute() else args.inventory
    is_lab = Path(inventory).name == "lab"
    notes: list[str] = []

    deploy = None
    if args.only in (None, "deploy"):
        if is_lab:
            deploy = deploy_timings(inventory)
        else:
            notes.append("SKIPPED: deploy timings: only for the lab (they destroy and recreate its containers)")
            print(notes[-1], flush=True)
    sip: dict = {}
    g = groups(inventory)
    hosts = {"proxy": g["sip_proxies"][0], "client": args.client or (g.get("sip_clients") or [None])[0],
             "db": (g.get("sip_db") or [None])[0], "relay": (g.get("media_relays") or [None])[0],
             "fs": g["media_servers"][0]}
    if not hosts["client"]:
        raise SystemExit("no SIPp host: give --client or a sip_clients group")
    info = ansible_value(inventory, hosts["proxy"],
                         "{'listen': opensips_listen_address, 'core': opensips_internal_address | default(''), 'domain': sip_domain, 'subscribers': sip_subscribers,"
                         " 'sets': opensips_dispatcher_sets, 'exempt': opensips_pike_exempt_networks | default([])}")
    client_ip = ansible_value(inventory, hosts["client"], "sip_public_address | default(sip_internal_address)"
                                                          " | default(ansible_host)")
    callee = ansible_value(inventory, hosts["client"], "lab_client_callee | default('9000')")
    accounts = [sipkit.Account(s["username"], s.get("domain", info["domain"]), s["password"], callee)
                for s in info["subscribers"] if s.get("state", "present") == "present"]
    media = [d["uri"] for d in info["sets"][0]["destinations"]]
    if not any(client_ip == n.split("/")[0] for n in info["exempt"]):
        notes.append(f"{client_ip} is not in opensips_pike_exempt_networks: rates are capped by pike")
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "versions": versions(inventory, hosts), "inventory": args.inventory,
            "client": hosts["client"], "duration": args.duration, "hold_ms": args.hold_ms}

    if args.only in (None, "sip"):
        client = remote(hosts["client"], inventory)
        target = f"{info['listen']}:5060"

        media_hosts = g["media_servers"][:2]
        components = {"proxy": hosts["proxy"], "relay": hosts["relay"], "db": hosts["db"],
                      "client": hosts["client"], **{f"media{i + 1}": h for i, h in enumerate(media_hosts)}}
        edge_probe = Probe(inventory, components)
        # the bare relay touches neither the relay nor the database: only CPU and the proxy's log
        relay_probe = Probe(inventory, {**components, "relay": None, "db": None}, proxy_units=(RELAY_UNIT,))

        def search(kind: str, tgt: str, label: str, probe: Probe):
            start = args.register_start if kind == "register" else args.call_start
            return highest_rate(label, lambda r: load(client, kind, tgt, accounts, args.hold_ms, args.duration, r,
                                                      probe), start, args.ceiling)

        sip["register"] = search("register", target, "edge REGISTER", edge_probe)
        sip["call"] = search("call", target, "edge calls", edge_probe)
        if args.no_baseline:
            notes.append("baseline not run (--no-baseline)")
        else:
            fs_ip = re.sub(r"^sips?:([^:;]+).*$", r"\1", media[0])
            proxy_ip = info["listen"]
            try:
                with Baseline(remote(hosts["proxy"], inventory), remote(hosts["fs"], inventory), proxy_ip,
                              info["core"] or proxy_ip, fs_ip,
                              client_ip, media, accounts) as relay:
                    sip["register_baseline"] = search("register", relay, "relay REGISTER", relay_probe)
                    sip["call_baseline"] = search("call", relay, "relay calls", relay_probe)
            except RuntimeError as err:
                notes.append(f"SKIPPED: baseline: {err}")
                print(notes[-1], flush=True)
        notes.append("the relay's REGISTERs are checked by a SIPp digest registrar (uas_registrar_auth) on "
                     f"{hosts['fs']}; its calls go to the same media servers, split by Call-ID hash")
    table = report(meta, sip, deploy, notes)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
