"""python3 -m tests.sim --seeds N [--seed S] [--minutes M] [--config FILE] [--schedule FILE]"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing
import sys
import time

from dnspair.core.config import ConfigError, parse

from . import run as runmod
from . import schedule as schedmod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.sim", description=__doc__)
    ap.add_argument("--seeds", type=int, default=None, help="run this many schedules (seeds FIRST..)")
    ap.add_argument("--first", type=int, default=1, help="first seed of --seeds / --minutes (default 1)")
    ap.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    ap.add_argument("--minutes", type=float, help="run as many schedules as fit in M minutes")
    ap.add_argument("--schedule", help="replay one schedule from a JSON file (as printed for a failure)")
    ap.add_argument("--config", default=str(runmod.DEFAULT_CONFIG),
                    help="pair config (default example/dnspair.yaml)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--shrink", type=int, default=5,
                    help="shrink at most this many failing seeds (default 5)")
    ap.add_argument("--log", action="store_true", help="with --schedule or --seed: print the engines' logs")
    a = ap.parse_args(argv)
    try:
        cfg_text = open(a.config).read()
        parse(cfg_text)
    except (OSError, ConfigError) as e:
        print(f"sim: bad config {a.config}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if a.schedule:
        try:
            sch = schedmod.loads(open(a.schedule).read())
        except (OSError, ValueError) as e:
            print(f"sim: bad schedule {a.schedule}: {e}", file=sys.stderr)
            return 2
        return _replay(cfg_text, sch, a.log)
    if a.seed and a.log:
        return max(_replay(cfg_text, schedmod.generate(s), True) for s in a.seed)
    if a.seed:
        seeds = iter(a.seed)
    elif a.seeds is not None:
        seeds = iter(range(a.first, a.first + a.seeds))
    elif a.minutes:
        seeds = itertools.count(a.first)
    else:
        ap.error("give --seeds N, --seed S, --minutes M or --schedule FILE")
    deadline = time.monotonic() + a.minutes * 60 if a.minutes else None
    return _many(cfg_text, seeds, deadline, a.jobs, a.shrink)


def _replay(cfg_text: str, sch: dict, show_log: bool) -> int:
    rec, viol, w = runmod.run_one(cfg_text, sch)
    if show_log:
        for t, node, level, text in rec.logs:
            print(f"{t:9.4f} {node} {level}: {text}")
        for t, vip, holders in rec.addrs:
            print(f"{t:9.4f} VIP{vip + 1} held by {', '.join(holders) or 'nobody'}")
    for v in viol:
        print(f"  {v}")
    print(f"sim: 1 schedules, {len(viol)} violations")
    return 1 if viol else 0


def _many(cfg_text: str, seeds, deadline, jobs, shrink_max: int) -> int:
    t0 = time.monotonic()
    n = nviol = shrunk = failed = 0
    known: dict = {}
    virtual = cpu = 0.0
    ctx = multiprocessing.get_context("fork")
    # Shrinking runs in the workers; past `shrink_max` failing seeds the rest are only listed.
    left = ctx.Value("i", shrink_max)
    with ctx.Pool(jobs, initializer=runmod.init_worker, initargs=(left,)) as pool:
        work = ((s, cfg_text) for s in seeds)
        it = pool.imap_unordered(runmod.check_seed, work, chunksize=4)
        try:
            for r in it:
                n += 1
                virtual += r["virtual"]
                cpu += r["cpu"]
                if r["violations"]:
                    nviol += len(r["violations"])
                    failed += 1
                    for k in r["known"]:
                        known[k] = known.get(k, 0) + 1
                    _print_failure(r)
                    shrunk += "minimal" in r
                if deadline and time.monotonic() > deadline:
                    pool.terminate()
                    break
        except KeyboardInterrupt:
            pool.terminate()
    wall = time.monotonic() - t0
    if n:
        print(f"# {n} schedules in {wall:.1f} s wall: {n / wall * 60:.0f} schedules/min, "
              f"{virtual / n:.1f} s virtual each, {cpu / n * 1000:.0f} ms each in a worker; "
              f"{failed} schedules with violations", file=sys.stderr)
    if known:
        print("# violations by known defect: " + ", ".join(
            f"{k or 'unclassified'} {c}" for k, c in sorted(known.items(), key=lambda kv: -kv[1])),
            file=sys.stderr)
    print(f"sim: {n} schedules, {nviol} violations")
    return 1 if nviol else 0


def _print_failure(r: dict) -> None:
    print(f"seed {r['seed']}: {len(r['violations'])} violations")
    for v, k in list(zip(r["violations"], r["known"], strict=True))[:10]:
        print(f"  {v}" + (f"  [known defect: {k}]" if k else ""))
    if "minimal" in r:
        print(f"  minimal schedule ({len(r['minimal_violations'])} violations; save it to a file and "
              f"replay with: python3 -m tests.sim --schedule FILE):")
        print(r["minimal"])
        for v in r["minimal_violations"][:5]:
            print(f"    {v}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
