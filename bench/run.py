"""Failover benchmark: dnspair against keepalived (default and tuned) on the same real
namespace network (tests/net/lab.py), same faults, same client.

    sudo python3 -m bench                      # all systems, 5 runs per fault
    sudo python3 -m bench --runs 3 --systems keepalived-tuned,dnspair --json out.json

Per run: start the HA daemons on both nodes, wait until VIP1 is answered by node1 and VIP2 by
node2, start the client (a UDP query to VIP1 every 20 ms, plus `getent hosts` in a loop through
a resolv.conf listing both VIPs), inject the fault on node1, wait for the first answer from
node2 on VIP1 (at most --max-wait s), keep watching --tail s, stop everything, restore.

outage   = fault → first answer from node2 on VIP1 (client clock, CLOCK_MONOTONIC)
lost     = queries to VIP1 sent after the fault with no answer within 1 s
getent   = longest single `getent hosts` lookup overlapping the fault window (glibc defaults:
           timeout 5 s, attempts 2, both VIPs in resolv.conf)
Then, once per system: spurious failovers while both nodes drop 20 % of the peer's heartbeat
packets for 20 s (answerer changes on VIP1+VIP2 seen by the client, and lost queries), and
CPU % / RSS of node1's HA process tree at rest over 10 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "net"))
sys.path.insert(0, str(HERE))

import lab as labmod  # noqa: E402
from lab import ANSWER, NODES, VIP1, VIP2, Lab, proc_rss, proc_tree_pids, proc_tree_usage  # noqa: E402
from systems import make_systems  # noqa: E402

FAULTS = ["link_down", "bind_stopped", "bind_hung", "orderly_stop", "planned_move"]
FAULT_LABEL = {
    "link_down": "silent node death (link down)",
    "bind_stopped": "bind stopped",
    "bind_hung": "bind hung (SIGSTOP)",
    "orderly_stop": "orderly stop of the HA daemon",
    "planned_move": "planned move (standby / maintenance)",
}
SYSTEMS = ["keepalived-default", "keepalived-tuned", "dnspair"]
# The client helpers are stdlib-only: the system python if there is one.
CLIENT_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


class Client:
    """The prober (and optionally the getent loop) running in the client namespace."""

    def __init__(self, lab: Lab, outdir: Path, servers, getent: bool, interval: float):
        self.lab = lab
        self.qfile = outdir / "queries.txt"
        self.gfile = outdir / "getent.txt"
        for f in (self.qfile, self.gfile):
            f.unlink(missing_ok=True)
        args = [CLIENT_PY, HERE / "prober.py", "--interval", interval, "--out", self.qfile]
        for s in servers:
            args += ["--server", s]
        self.prober = lab.popen("client", args, log=outdir / "prober.log", what="prober")
        self.getent = None
        if getent:
            self.getent = lab.popen("client", [CLIENT_PY, HERE / "getent_loop.py", self.gfile],
                                    log=outdir / "getent.log", what="getent-loop")

    def lines(self):
        try:
            text = self.qfile.read_text()
        except OSError:
            return []
        out = []
        for ln in text.splitlines():
            p = ln.split()
            if len(p) == 5:
                out.append((p[0], int(p[1]), float(p[2]), float(p[3]), p[4]))
        return out

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.lines()):
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self.lab.stop_process(self.prober, grace=5)
        if self.getent:
            self.lab.stop_process(self.getent, grace=15)

    def getent_lookups(self):
        out = []
        try:
            for ln in self.gfile.read_text().splitlines():
                p = ln.split()
                if len(p) == 3:
                    out.append((float(p[0]), float(p[1]), p[2]))
        except OSError:
            pass
        return out


def settle(lab: Lab, system, attempts=4):
    """Start the system from a clean state and wait until VIP1 is on node1 and VIP2 on node2,
    each answered there. Start-up elections can race (two nodes starting at once): if the
    placement is wrong, restart (a few attempts)."""
    why = "?"
    for attempt in range(attempts):
        system.start()
        deadline = time.monotonic() + system.settle_timeout
        while time.monotonic() < deadline:
            if lab.vips_on("node1") == [VIP1] and lab.vips_on("node2") == [VIP2]:
                break
            time.sleep(0.1)
        ok = (lab.vips_on("node1") == [VIP1] and lab.vips_on("node2") == [VIP2]
              and lab.wait_answer(VIP1, "node1", 10) and lab.wait_answer(VIP2, "node2", 10))
        if ok:
            time.sleep(0.5)
            if lab.vips_on("node1") == [VIP1] and lab.vips_on("node2") == [VIP2]:
                return attempt
        why = f"node1 has {lab.vips_on('node1')}, node2 {lab.vips_on('node2')}"
        log(f"{system.name}: start-up placement wrong ({why}); restarting")
        restore(lab, system)
    raise RuntimeError(f"{system.name}: VIPs not at home after {attempts} starts; {why}")


def restore(lab: Lab, system):
    system.stop()
    for node in NODES:
        lab.link_up(node, "all")
        lab.clear_drops(node)
        lab.restore_bind(node)
    lab.clear_vips()
    lab.flush_arp("client")


def inject(lab: Lab, system, fault: str, node="node1"):
    if fault == "link_down":
        lab.link_down(node, "all")
    elif fault == "bind_stopped":
        lab.stop_bind(node)
    elif fault == "bind_hung":
        lab.hang_bind(node)
    elif fault == "orderly_stop":
        system.orderly_stop(node)
    elif fault == "planned_move":
        system.planned_move(node)
    else:
        raise ValueError(fault)


def one_run(lab: Lab, system, fault: str, outdir: Path, args) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    settle(lab, system)
    client = Client(lab, outdir, [VIP1], getent=not args.no_getent, interval=args.interval)
    try:
        # The client sees node1 on VIP1 before the fault.
        if not client.wait_for(lambda ls: sum(1 for x in ls if x[4] == ANSWER["node1"]) >= 10,
                               30):
            raise RuntimeError("client never answered by node1 before the fault")
        # A random phase: otherwise the fault always lands at the same point of the HA
        # daemon's timers (which start with the run) and the runs are not independent.
        time.sleep(0.3 + random.uniform(0.0, args.jitter))
        t_fault = time.monotonic()
        inject(lab, system, fault)
        moved = client.wait_for(
            lambda ls: any(x[2] >= t_fault and x[4] == ANSWER["node2"] for x in ls),
            args.max_wait)
        time.sleep(args.tail)
        t_end = time.monotonic()
    finally:
        client.stop()
    lines = [x for x in client.lines() if x[0] == VIP1]
    after = [x for x in lines if x[2] >= t_fault and x[2] <= t_end]
    n2 = [x[3] for x in after if x[4] == ANSWER["node2"] and x[3] > 0]
    outage = (min(n2) - t_fault) if (moved and n2) else None
    lost = sum(1 for x in after if x[3] < 0)
    # answers from node1 after node2 answered = flap back
    first_n2 = min(n2) if n2 else None
    flaps = 0
    prev = None
    for x in sorted(after, key=lambda x: x[2]):
        if x[3] < 0:
            continue
        if prev is not None and x[4] != prev:
            flaps += 1
        prev = x[4]
    getent_worst = None
    lookups = client.getent_lookups()
    window = [g for g in lookups if g[1] >= t_fault and g[0] <= t_end]
    if window:
        getent_worst = max(g[1] - g[0] for g in window)
    return {"outage": outage, "lost": lost, "sent": len(after), "answer_changes": flaps,
            "getent_worst": getent_worst, "getent_failed": sum(1 for g in window if g[2] == "-"),
            "first_node2": first_n2 - t_fault if first_n2 else None}


def loss_run(lab: Lab, system, outdir: Path, args) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    settle(lab, system)
    client = Client(lab, outdir, [VIP1, VIP2], getent=False, interval=args.interval)
    try:
        client.wait_for(lambda ls: len(ls) >= 20, 30)
        t0 = time.monotonic()
        for node in NODES:
            lab.drop_heartbeats(node, args.loss, **system.heartbeat_match)
        time.sleep(args.loss_seconds)
        t1 = time.monotonic()
        dropped = {n: lab.drop_counter(n) for n in NODES}
        for node in NODES:
            lab.clear_drops(node)
    finally:
        client.stop()
        for node in NODES:
            lab.clear_drops(node)
    res = {"lost": 0, "answer_changes": 0, "sent": 0, "dropped_heartbeats": None,
           "seconds": args.loss_seconds}
    for vip, home in ((VIP1, "node1"), (VIP2, "node2")):
        xs = sorted((x for x in client.lines() if x[0] == vip and t0 <= x[2] <= t1),
                    key=lambda x: x[2])
        res["sent"] += len(xs)
        res["lost"] += sum(1 for x in xs if x[3] < 0)
        prev = ANSWER[home]
        for x in xs:
            if x[3] < 0:
                continue
            if x[4] != prev:
                res["answer_changes"] += 1
            prev = x[4]
    res["vips_after"] = {n: lab.vips_on(n) for n in NODES}
    res["dropped_heartbeats"] = dropped
    return res


def rest_run(lab: Lab, system, args) -> dict:
    settle(lab, system)
    time.sleep(2.0)
    pid = system.rest_pid("node1")
    pids0 = proc_tree_pids(pid)
    c0, _ = proc_tree_usage(pid)
    t0 = time.monotonic()
    time.sleep(args.rest_seconds)
    c1, _ = proc_tree_usage(pid)
    t1 = time.monotonic()
    # CPU: the whole tree, including reaped children (track scripts). RSS: the long-lived
    # processes only (present at both ends), not a check script that happened to be running.
    steady = pids0 & proc_tree_pids(pid)
    return {"cpu_percent": 100.0 * (c1 - c0) / (t1 - t0), "rss_mb": proc_rss(steady) / 2**20,
            "processes": len(steady), "seconds": args.rest_seconds}


def fmt_s(v):
    return "never" if v is None else f"{v:.2f} s"


def summarize(results: dict) -> dict:
    summ = {}
    for sysname, per in results.items():
        s = {}
        for fault, runs in per.get("faults", {}).items():
            outs = [r["outage"] for r in runs if "outage" in r]
            ok = [o for o in outs if o is not None]
            s[fault] = {
                "runs": len(runs),
                "outage_median": statistics.median(ok) if ok and len(ok) == len(outs) else (
                    statistics.median(ok) if ok else None),
                "outage_worst": (max(ok) if ok and len(ok) == len(outs) else None),
                "never": len(outs) - len(ok),
                "lost_median": statistics.median([r["lost"] for r in runs]) if runs else None,
                "lost_worst": max((r["lost"] for r in runs), default=None),
                "getent_worst": max((r["getent_worst"] for r in runs
                                     if r.get("getent_worst") is not None), default=None),
                "getent_slow_runs": sum(1 for r in runs if (r.get("getent_worst") or 0) > 0.5),
                "errors": sum(1 for r in runs if "error" in r),
            }
        summ[sysname] = s
    return summ


def table(results: dict, labels: dict) -> str:
    summ = summarize(results)
    names = list(results)
    head = "| | " + " | ".join(labels[n] for n in names) + " |"
    sep = "|---" * (len(names) + 1) + "|"
    rows = [head, sep]
    for fault in FAULTS:
        if not any(fault in summ[n] for n in names):
            continue
        cells = []
        for n in names:
            f = summ[n].get(fault)
            if not f:
                cells.append("n/a")
                continue
            never = f" ({f['never']}/{f['runs']} never)" if f["never"] else ""
            err = f" ({f['errors']} errors)" if f["errors"] else ""
            cells.append(f"{fmt_s(f['outage_median'])} / {fmt_s(f['outage_worst'])}{never}{err}"
                         f"; lost {f['lost_median']:g}/{f['lost_worst']}"
                         + (f"; getent {f['getent_worst']:.1f} s ({f['getent_slow_runs']}/"
                            f"{f['runs']} runs > 0.5 s)" if f["getent_worst"] is not None else ""))
        rows.append(f"| {FAULT_LABEL[fault]} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        lr = results[n].get("loss")
        if not lr:
            cells.append("n/a")
        elif "error" in lr:
            cells.append("error: " + lr["error"][:60])
        else:
            cells.append(f"{lr['answer_changes']} answerer changes, {lr['lost']}/{lr['sent']} "
                         f"queries lost")
    rows.append(f"| heartbeat loss (both ways{_secs(results, 'loss')}) | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        rr = results[n].get("rest")
        if not rr:
            cells.append("n/a")
        elif "error" in rr:
            cells.append("error: " + rr["error"][:60])
        else:
            cells.append(f"{rr['cpu_percent']:.2f} % CPU, {rr['rss_mb']:.1f} MB RSS")
    rows.append(f"| at rest, node1{_secs(results, 'rest')} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _secs(results: dict, kind: str) -> str:
    """", N s": how long the loss or rest part ran (--loss-seconds, --rest-seconds)."""
    for r in results.values():
        part = r.get(kind) or {}
        if "seconds" in part:
            return f", {part['seconds']:g} s"
    return ""


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma list of " + ", ".join(SYSTEMS))
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma list of " + ", ".join(FAULTS))
    ap.add_argument("--interval", type=float, default=0.02, help="client query interval (s)")
    ap.add_argument("--max-wait", type=float, default=15.0,
                    help="give up waiting for node2 after this (s)")
    ap.add_argument("--jitter", type=float, default=1.0,
                    help="random extra delay before each fault, s (decorrelates timer phase)")
    ap.add_argument("--tail", type=float, default=1.0, help="keep watching after the move (s)")
    ap.add_argument("--loss", type=int, default=20, help="heartbeat loss percent")
    ap.add_argument("--loss-seconds", type=float, default=20.0)
    ap.add_argument("--rest-seconds", type=float, default=10.0)
    ap.add_argument("--no-getent", action="store_true")
    ap.add_argument("--resolv-options", default=None,
                    help="an `options` line for the client's resolv.conf, e.g. 'timeout:1' "
                         "(default: none, glibc's 5 s timeout)")
    ap.add_argument("--no-loss", action="store_true")
    ap.add_argument("--no-rest", action="store_true")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) for debugging")
    args = ap.parse_args(argv)

    why = labmod.requirements_missing()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    if args.keep:
        os.environ["DNSPAIR_LAB_KEEP"] = "1"
    # SIGTERM/SIGHUP: unwind through the finally blocks (teardown) instead of dying.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    faults = [f for f in args.faults.split(",") if f]
    results, labels = {}, {}
    t_start = time.monotonic()
    lab = Lab()
    try:
        lab.start()
        lab.resolv_conf([VIP1, VIP2], options=args.resolv_options)
        log(f"lab up: namespaces {', '.join(lab.ns.values())}, work dir {lab.workdir}")
        for system in make_systems(lab, lab.workdir / "bench", args.systems.split(",")):
            labels[system.name] = system.describe()
            why = system.available()
            if why:
                log(f"{system.name}: skipped: {why}")
                results[system.name] = {"skipped": why}
                continue
            system.prepare()
            res = results.setdefault(system.name, {"faults": {}})
            outdir = system.workdir
            for fault in faults:
                runs = res["faults"].setdefault(fault, [])
                for i in range(args.runs):
                    try:
                        r = one_run(lab, system, fault, outdir / f"{fault}-{i + 1}", args)
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001 - record and carry on
                        r = {"outage": None, "lost": 0, "error": str(e)[:300]}
                    finally:
                        if fault == "planned_move":
                            system.end_planned_move("node1")
                        restore(lab, system)
                    runs.append(r)
                    log(f"{system.name} {fault} #{i + 1}: outage {fmt_s(r.get('outage'))} "
                        f"lost {r.get('lost')} getent "
                        f"{fmt_s(r.get('getent_worst'))}" + (f" ERROR {r['error']}"
                                                            if "error" in r else ""))
            if not args.no_loss:
                try:
                    res["loss"] = loss_run(lab, system, outdir / "loss", args)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001
                    res["loss"] = {"error": str(e)[:300]}
                finally:
                    restore(lab, system)
                log(f"{system.name} loss: {res['loss']}")
            if not args.no_rest:
                try:
                    res["rest"] = rest_run(lab, system, args)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001
                    res["rest"] = {"error": str(e)[:300]}
                finally:
                    restore(lab, system)
                log(f"{system.name} rest: {res['rest']}")
    finally:
        lab.close()
    ran = {k: v for k, v in results.items() if "skipped" not in v}
    machine = f"{platform.uname().system} {platform.uname().release} {platform.machine()}, " \
              f"{os.cpu_count()} CPUs"
    print(f"\ndnspair failover benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{machine}, {args.runs} runs per fault, client query every "
          f"{args.interval * 1000:.0f} ms, took {time.monotonic() - t_start:.0f} s")
    print("cells: outage median / worst; queries lost median/worst; longest getent lookup "
          "(runs with a lookup > 0.5 s)")
    print(f"client resolv.conf: nameserver {VIP1}, nameserver {VIP2}"
          + (f", options {args.resolv_options}" if args.resolv_options else
             " (glibc defaults: timeout 5 s, attempts 2)") + "\n")
    print(table(ran, labels) if ran else "(no system ran)")
    for k, v in results.items():
        if "skipped" in v:
            print(f"\n{k}: skipped: {v['skipped']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine,
                                               "results": results,
                                               "summary": summarize(ran)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
