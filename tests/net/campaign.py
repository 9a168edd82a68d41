"""Randomized fault schedules on the namespace network, judged by what a client sees.

    .venv/bin/python -m tests.net.campaign --runs R [--seed S] [--steps K] [--json FILE]

Schedule i of a campaign with seed S is drawn from seed S+i, so `--seed S+i --runs 1`
replays it (same faults, same order; the machine's timing is not replayed). Each schedule gets
a fresh lab and pair (failback manual), K steps of one fault then its recovery, then
`dnspair cleanup` and a check that every VIP is at home. Invariants: campaign_check.py and
docs/faults.md ("Randomized campaign").
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import campaign_check as check  # noqa: E402
import lab as labmod  # noqa: E402
from campaign_check import Event, Record  # noqa: E402
from campaign_watch import Client, Flood, Sampler  # noqa: E402
from pair import NODE_NAME, Pair  # noqa: E402

KINDS = ("freeze", "link", "bind_stop", "bind_hang", "kill", "loss", "flood")
# Failover budgets (s) from the fault, as in the lead's simulator; a freeze adds its length.
BUDGET = {"freeze": 0.25, "link": 0.25, "bind_stop": 0.25, "bind_hang": 0.4, "kill": 0.25,
          "loss": 0.25, "flood": 0.25, "recovery": 0.25, "cleanup": 0.25, "start": 0.0}
DEAF = {"freeze", "link", "kill", "loss"}   # faults during which the nodes may not hear each other
SETTLE = 2.0        # after the last step, before the convergence checks
CONVERGE = 1.0      # after `dnspair cleanup`: every VIP at home within this (plus slack)
UNIT = Path(__file__).resolve().parents[2] / "overlays/etc/systemd/system/dnspair.service"
HEARTBEAT_PORT = 7405
OTHER = {"node1": "node2", "node2": "node1"}


def draw(seed: int, steps: int, kinds=KINDS) -> list[dict]:
    """A schedule: K steps, each a fault kind, a node and the fault's parameters."""
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        kind = rng.choice(kinds)
        s = {"kind": kind, "node": rng.choice(labmod.NODES), "pause": round(rng.uniform(0.5, 1.5), 3)}
        if kind == "freeze":
            # log-uniform: as many freezes near the 0.2 s dead time as near 1 s
            s["seconds"] = round(math.exp(rng.uniform(math.log(0.05), math.log(1.0))), 3)
        elif kind in ("link", "bind_stop", "bind_hang"):
            s["seconds"] = round(rng.uniform(0.3, 2.0), 3)
        elif kind == "kill":
            s["seconds"] = round(rng.uniform(0.3, 1.0), 3)
            s["clock"] = rng.choice(("-1h", "+1h"))
        elif kind == "loss":
            s["node"] = rng.choice(labmod.NODES + ("both",))
            s["percent"] = rng.choice((30, 50, 70, 90, 100))
            s["seconds"] = round(rng.uniform(0.2, 2.0), 3)
        elif kind == "flood":
            s["clients"] = rng.randint(200, 5000)  # past the unit's LimitNOFILE 4096
            s["inner"] = rng.choice(("bind_stop", "link"))
            s["seconds"] = round(rng.uniform(0.5, 2.0), 3)
        out.append(s)
    return out


def describe(s: dict) -> str:
    k, n, d = s["kind"], s["node"], s.get("seconds")
    if k == "kill":
        return f"kill -9 dnspair on {n}, release after {d} s, restart with clock {s['clock']}"
    if k == "loss":
        return f"drop {s['percent']} % of heartbeats into {n} for {d} s"
    if k == "flood":
        got = f" ({s['connected']} connected)" if "connected" in s else ""
        return (f"{s['clients']} idle clients{got} on {n}'s control socket while "
                f"{s['inner']} on {OTHER[n]} for {d} s")
    what = {"freeze": "SIGSTOP dnspair", "link": "link down", "bind_stop": "stop bind",
            "bind_hang": "SIGSTOP bind"}[k]
    return f"{what} on {n} for {d} s"


def nofile() -> int:
    """The daemons' open-file limit: the unit's LimitNOFILE, else systemd's default soft 1024."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("LimitNOFILE="):
            return int(line.split("=", 1)[1].split(":")[0])
    return 1024


# A wall clock shifted inside Python (time.time, time.time_ns: what the daemon and its logging
# read), same PID. The default: libfaketime stalls a threaded Python's event loop (measured:
# asyncio.sleep(0.01) up to 340-570 ms late with a logging thread, 8 ms without the library).
SHIFT = r"""
import sys, time
off = float(sys.argv.pop(1))
real, real_ns = time.time, time.time_ns
time.time = lambda: real() + off
time.time_ns = lambda: real_ns() + int(off * 1e9)
from dnspair.cli import main
sys.exit(main())
"""
SECONDS = {"-1h": -3600.0, "+1h": 3600.0}


def faketime_lib() -> str:
    # The MT build: the daemon logs from a thread (QueueListener), and with the plain build
    # the restarted daemon stalled 0.2-1.3 s again and again (seed 12018 on c3c2142).
    libs = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    if not libs:
        raise SystemExit("campaign: libfaketime not found (apt-get install faketime)")
    return libs[0]


class Run:
    """One schedule on a fresh lab: apply the steps, record, judge."""

    def __init__(self, lab, seed: int, steps: list[dict], slack: float, faketime: bool = False):
        self.lab, self.seed, self.steps, self.slack = lab, seed, steps, slack
        self.faketime = faketime
        self.pair = Pair(lab)
        self.rec = Record()
        self.violations: list[dict] = []
        self.after: list[dict] = []
        self.converge_s = None

    # ---- daemons

    def start_daemon(self, node: str, clock: str | None = None):
        """Like Pair.start, but under the open-file limit of the systemd unit, and optionally
        with the wall clock shifted (libfaketime preloaded; the monotonic clock stays real).
        The preload rather than the `faketime` wrapper: the wrapper forks, and the campaign
        must signal the daemon's own PID."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(k, None)
        src = str(Path(labmod.__file__).resolve().parents[2] / "src")
        env["PYTHONPATH"] = src
        dnspair = self.lab.dnspair_command()
        if clock and self.faketime:
            env.update(LD_PRELOAD=faketime_lib(), FAKETIME=clock, DONT_FAKE_MONOTONIC="1",
                       FAKETIME_FORCE_MONOTONIC_FIX="1")
        elif clock:
            dnspair = [sys.executable, "-c", SHIFT, str(SECONDS[clock])]
        log = self.lab.workdir / node / "dnspair.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["sh", "-c", f'ulimit -n {nofile()}; exec "$@"', "sh", *dnspair,
               "daemon", "--config", str(self.pair.configs[node]), "--node", NODE_NAME[node]]
        self.pair.procs[node] = self.lab.popen(node, cmd, log=log, env=env, what=f"dnspair@{node}")

    def wait_ready(self, node: str, timeout: float = 20.0):
        self.pair.wait(lambda: self.pair.status(node)["nodes"] and self.pair.me(node)["ready"],
                       f"{node} ready", timeout)

    # ---- recording

    def event(self, step: int, kind: str, phase: str, budget: float, rolling: bool = False):
        self.rec.events.append(Event(time.monotonic(), step, kind, phase, budget, rolling))

    def violate(self, invariant: str, **detail):
        self.violations.append(dict(detail, invariant=invariant))

    def snapshot(self) -> dict:
        lab = self.lab
        return {"arp": {v: lab.arp_entry("client", v) for v in labmod.VIPS},
                "arp_owner": {v: lab.arp_owner(v) for v in labmod.VIPS},
                "vips_on": {n: lab.vips_on(n) for n in labmod.NODES}}

    # ---- faults

    def _inner(self, kind: str, node: str, seconds: float, i: int, budget_kind: str):
        """A fault held for `seconds`, then its recovery. Returns (deaf start, deaf end).
        Each event is recorded just before its action: what the sampler sees next is its effect."""
        lab, p = self.lab, self.pair
        budget = BUDGET[kind] + (seconds if kind == "freeze" else 0.0)
        do, undo = {
            "freeze": (lambda: lab.send_signal(p.procs[node], signal.SIGSTOP),
                       lambda: lab.send_signal(p.procs[node], signal.SIGCONT)),
            "link": (lambda: lab.link_down(node), lambda: lab.link_up(node)),
            "bind_stop": (lambda: lab.stop_bind(node), lambda: lab.restore_bind(node)),
            "bind_hang": (lambda: lab.hang_bind(node), lambda: lab.resume_bind(node)),
        }[kind]
        t0 = time.monotonic()
        self.event(i, budget_kind, "fault", budget)
        do()
        time.sleep(seconds)
        self.event(i, budget_kind, "recovery", BUDGET["recovery"])
        undo()
        return t0, time.monotonic()

    def step(self, i: int, s: dict):
        lab, p, kind, node, secs = self.lab, self.pair, s["kind"], s["node"], s["seconds"]
        deaf = None
        if kind in ("freeze", "link", "bind_stop", "bind_hang"):
            deaf = self._inner(kind, node, secs, i, kind)
        elif kind == "loss":
            t0 = time.monotonic()
            self.event(i, kind, "fault", BUDGET["loss"], rolling=True)
            targets = labmod.NODES if node == "both" else (node,)
            for n in targets:
                lab.drop_heartbeats(n, s["percent"], port=HEARTBEAT_PORT)
            time.sleep(secs)
            self.event(i, kind, "recovery", BUDGET["recovery"])
            for n in targets:
                lab.clear_drops(n)
            deaf = (t0, time.monotonic())
        elif kind == "kill":
            t0 = time.monotonic()
            self.event(i, kind, "fault", BUDGET["kill"])
            p.stop(node, sig=signal.SIGKILL)
            time.sleep(secs)
            self.event(i, kind, "recovery", BUDGET["recovery"])
            r = lab.dnspair_cli(node, "release", "--config", str(p.configs[node]))  # ExecStopPost
            if r.returncode != 0:
                self.violate("5 daemon healthy", step=i, detail=f"release failed: {r.stderr.strip()}")
            self.start_daemon(node, clock=s["clock"])
            try:
                self.wait_ready(node)
            except AssertionError as e:
                self.violate("5 daemon healthy", step=i, detail=f"restart not ready: {str(e)[:300]}")
            deaf = (t0, time.monotonic())
        elif kind == "flood":
            sock = lab.workdir / node / "control.sock"
            self.event(i, kind, "fault", BUDGET["flood"])
            flood = Flood(sock, s["clients"])
            s["connected"] = flood.connected
            try:
                d = self._inner(s["inner"], OTHER[node], secs, i, kind)
                if s["inner"] == "link":
                    deaf = d
                time.sleep(0.5)  # the takeover under the flood, before the flood ends
            finally:
                self.event(i, kind, "recovery", BUDGET["recovery"])
                flood.stop()
        if deaf and kind in DEAF | {"flood"}:
            self.rec.deaf.append(deaf)
        time.sleep(s["pause"])
        self.after.append(self.snapshot())

    # ---- the whole schedule

    def settled(self, home: bool) -> str | None:
        """None when every VIP has one holder, the client points at it and it answers
        (and, if home, that holder is the VIP's preferred node); else what is wrong."""
        lab = self.lab
        on = {n: set(lab.vips_on(n)) for n in labmod.NODES}
        for vip, want in zip(labmod.VIPS, labmod.NODES, strict=True):
            holders = [n for n in labmod.NODES if vip in on[n]]
            if len(holders) != 1:
                return f"{vip} held by {holders or 'nobody'}"
            if home and holders != [want]:
                return f"{vip} on {holders[0]}, not at home on {want}"
            if lab.arp_owner(vip) != holders[0]:
                return f"{vip}: client's neighbour entry on {lab.arp_owner(vip)}, held by {holders[0]}"
            if lab.who_answers(vip, timeout=0.2) != holders[0]:
                return f"{vip} not answered by its holder {holders[0]}"
        return None

    def wait_settled(self, home: bool, timeout: float) -> tuple[float | None, str | None]:
        t0 = time.monotonic()
        why = "not checked"
        while time.monotonic() - t0 < timeout:
            why = self.settled(home)
            if why is None:
                return time.monotonic() - t0, None
            time.sleep(0.05)
        return None, why

    def run(self) -> None:
        lab, p = self.lab, self.pair
        for n in labmod.NODES:
            self.start_daemon(n)
        for n in labmod.NODES:
            self.wait_ready(n)
        p.wait_served(labmod.VIP1, "node1")
        p.wait_served(labmod.VIP2, "node2")
        client, sampler = Client(lab, timeout=self.rec.timeout).start(), Sampler(lab).start()
        try:
            time.sleep(0.5)
            self.event(-1, "start", "recovery", BUDGET["start"])
            for i, s in enumerate(self.steps):
                self.step(i, s)
            time.sleep(SETTLE)
            k = len(self.steps)
            _, why = self.wait_settled(home=False, timeout=2.0 + self.slack)
            if why:
                self.violate("4 converged", step=k, detail=f"before cleanup: {why}")
            self.event(k, "cleanup", "recovery", BUDGET["cleanup"])
            r = p.cli("node1", "cleanup")
            if r.returncode != 0:
                self.violate("4 converged", step=k, detail=f"dnspair cleanup failed: {r.stderr.strip()}")
            self.converge_s, why = self.wait_settled(home=True, timeout=CONVERGE + self.slack)
            if why:
                self.violate("4 converged", step=k, detail=f"after cleanup: {why}")
            time.sleep(0.5)
        finally:
            client.stop()
            sampler.stop()
        self.rec.samples, self.rec.snaps = client.samples, sampler.snaps
        for n, proc in p.procs.items():
            if proc.poll() is not None:
                self.violate("5 daemon healthy", node=n, detail=f"daemon exited rc={proc.returncode}")
        self.judge()

    def judge(self):
        bad, self.outages = check.check_answers(self.rec, labmod.VIPS, self.slack)
        bad += check.check_arp(self.rec, labmod.VIPS, self.slack)
        bad += check.check_duplicates(self.rec, labmod.VIPS, self.slack)
        for n in labmod.NODES:
            log = (self.lab.workdir / n / "dnspair.log").read_text(errors="replace")
            if "Traceback" in log:
                i = log.index("Traceback")
                bad.append({"invariant": "5 no traceback", "node": n,
                            "detail": log[max(0, i - 200):i + 1200]})
        t0 = self.rec.events[0].t if self.rec.events else 0.0
        for v in bad:  # times relative to the first event, for reading
            for key in ("start", "end"):
                if isinstance(v.get(key), float):
                    v[key] = round(v[key] - t0, 3)
        for o in self.outages:
            for key in ("start", "end"):
                o[key] = round(o[key] - t0, 3)
        self.violations += bad


def run_one(seed: int, steps: int, slack: float, keep: Path | None, kinds=KINDS,
            faketime: bool = False) -> dict:
    schedule = draw(seed, steps, kinds)
    lab = labmod.Lab()
    result = {"seed": seed, "steps": schedule}
    try:
        lab.start()
        r = Run(lab, seed, schedule, slack, faketime)
        try:
            r.run()
        except Exception as e:  # noqa: BLE001 - a broken schedule is a result, not a crash
            r.violate("run", detail=f"{type(e).__name__}: {str(e)[:2000]}")
            r.outages = getattr(r, "outages", [])
        t0 = r.rec.events[0].t if r.rec.events else 0.0
        result.update(violations=r.violations, outages=r.outages, after=r.after,
                      converge_s=r.converge_s,
                      events=[(round(e.t - t0, 3), e.step, e.kind, e.phase) for e in r.rec.events])
        if r.violations and keep:
            dest = keep / str(seed)
            dest.mkdir(parents=True, exist_ok=True)
            for n in labmod.NODES:
                for f in ("dnspair.log", "named.log"):
                    src = lab.workdir / n / f
                    if src.exists():
                        shutil.copy(src, dest / f"{n}-{f}")
            (dest / "record.json").write_text(json.dumps(
                {"samples": [(round(s.t, 4), s.vip, s.node) for s in r.rec.samples],
                 "snaps": [(round(s.t, 4), {v: sorted(h) for v, h in s.holders.items()}, s.arp)
                           for s in r.rec.snaps],
                 "events": [(round(e.t, 4), e.step, e.kind, e.phase, e.budget) for e in r.rec.events],
                 "deaf": r.rec.deaf}))
            result["logs"] = str(dest)
    finally:
        lab.close()
    return result


def table(results) -> str:
    worst, count = {}, {}
    for r in results:
        for s in r["steps"]:
            count[s["kind"]] = count.get(s["kind"], 0) + 1
        for k, v in check.worst_by_kind(r.get("outages", [])).items():
            worst[k] = max(worst.get(k, 0.0), v)
    lines = ["fault kind   steps  worst outage (s)"]
    for k in KINDS + ("cleanup", "start", "none"):
        if k in count or k in worst:
            lines.append(f"{k:<12} {count.get(k, 0):>5}  {worst.get(k, 0.0):.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.net.campaign", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, required=True, help="number of schedules")
    ap.add_argument("--seed", type=int, help="campaign seed (default: random; printed first)")
    ap.add_argument("--steps", type=int, default=6, help="faults per schedule (default 6)")
    ap.add_argument("--slack", type=float, default=1.0,
                    help="seconds added to every budget for the shared 2-core machine (default 1)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated fault kinds to draw from (default: all; replay with the same)")
    ap.add_argument("--faketime", action="store_true",
                    help="shift a restarted daemon's clock with libfaketime (preloaded) instead of "
                         "inside Python; the library stalls the daemon's loop (false violations)")
    ap.add_argument("--json", type=Path, help="write every schedule's record summary here")
    ap.add_argument("--keep", type=Path, default=Path("/tmp/dnspair-campaign"),
                    help="logs and records of failing schedules go to KEEP/SEED (default %(default)s)")
    a = ap.parse_args(argv)
    if a.runs < 1 or a.steps < 1 or a.slack < 0:
        print("campaign: --runs and --steps must be at least 1, --slack not negative", file=sys.stderr)
        return 2
    kinds = tuple(k for k in a.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        print(f"campaign: unknown fault kind {','.join(unknown) or '(none)'} (kinds: {','.join(KINDS)})",
              file=sys.stderr)
        return 2
    why = labmod.requirements_missing()
    if why:
        print(f"campaign: {why}", file=sys.stderr)
        return 2
    if a.faketime:
        faketime_lib()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"campaign: seed {seed} ({a.runs} schedules of {a.steps} steps; budgets + {a.slack:g} s slack; "
          f"replay schedule i with --seed {seed}+i --runs 1)", flush=True)
    results, total = [], 0
    for i in range(a.runs):
        t0 = time.monotonic()
        r = run_one(seed + i, a.steps, a.slack, a.keep, kinds, a.faketime)
        results.append(r)
        total += len(r["violations"])
        print(f"schedule {i + 1}/{a.runs} seed {seed + i}: {len(r['violations'])} violations "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
        if r["violations"]:
            print(f"  FAILED seed {seed + i}" + (f" (logs: {r['logs']})" if r.get("logs") else ""))
            for j, s in enumerate(r["steps"]):
                print(f"    step {j}: {describe(s)}")
            for v in r["violations"]:
                print("    violated " + json.dumps(v, default=str)[:600])
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps({"seed": seed, "runs": a.runs, "steps": a.steps,
                                      "slack": a.slack, "violations": total,
                                      "schedules": results}, indent=1, default=str))
    print(f"campaign: {a.runs} schedules, {total} violations")
    return 0 if total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
