"""dnspair's pair at rest, measured finely: on-CPU time from its threads' schedstat (ns) and loop
wakeups (voluntary context switches) from /proc/PID/status, of both nodes, over ROUNDS x SECONDS.

    sudo .venv/bin/python bench/rest_pair.py [SECONDS [ROUNDS]]

It runs the dnspair of the tree it lives in (the bench's lab, config and start-up, no client).
To compare two versions without the machine's load in the way, run it from both worktrees at
the same time (each makes its own namespaces); one JSON line per round.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "net"))
sys.path.insert(0, str(HERE))

import run as benchrun  # noqa: E402
from lab import Lab, on_cpu  # noqa: E402
from systems import make_systems  # noqa: E402


def wakeups(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def cpu(pid: int) -> float:
    secs = on_cpu(pid)
    if secs is None:
        raise SystemExit(f"rest_pair: no /proc/{pid}/task/*/schedstat (daemon gone, or no schedstats)")
    return secs


def main() -> int:
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    lab = Lab()
    try:
        lab.start()
        system = make_systems(lab, lab.workdir / "bench", ["dnspair"])[0]
        system.prepare()
        benchrun.settle(lab, system)
        time.sleep(2.0)
        pids = {n: system.rest_pid(n) for n in ("node1", "node2")}
        for r in range(rounds):
            before = {n: (cpu(p), wakeups(p)) for n, p in pids.items()}
            t0 = time.monotonic()
            time.sleep(secs)
            dt = time.monotonic() - t0
            out: dict = {"tree": str(HERE.parent), "round": r, "load": os.getloadavg()[0]}
            for n, p in pids.items():
                c, w = before[n]
                out[n] = {"cpu_percent": round(100 * (cpu(p) - c) / dt, 3),
                          "wakeups_per_s": round((wakeups(p) - w) / dt, 1)}
            print(json.dumps(out), flush=True)
        system.stop()
    finally:
        lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
