"""python3 -m tests.sim.determinism --out FILE | --compare FILE [--seeds N] [--config FILE ...]

Per seed, what a run did: its violations, how many engine calls and events it took, and the
digest of its whole trace (every engine call with its event, actions and deadline, then every
query, address change and log line: `World(trace=True)`). Written as JSON with --out; with
--compare, the same is computed again and every seed that differs is listed. For checking
that a speed-up changes nothing the engines or the simulator do: run --out before the
change, --compare after it. Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

from . import run as runmod
from . import schedule as schedmod

CONFIGS = [runmod.DEFAULT_CONFIG] + sorted((Path(__file__).parent / "configs").glob("*.yaml"))


def one(args: tuple[str, str, int]) -> tuple[str, int, dict]:
    name, cfg_text, seed = args
    rec, viol, _ = runmod.run_one(cfg_text, schedmod.generate(seed), trace=True)
    return name, seed, {"violations": [str(v) for v in viol], "calls": rec.calls,
                        "events": rec.events, "digest": rec.digest}


def compute(configs: list[Path], seeds: int, jobs: int | None) -> dict:
    work = [(p.name, p.read_text(), s) for p in configs for s in range(1, seeds + 1)]
    out: dict = {p.name: {} for p in configs}
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for name, seed, r in pool.imap_unordered(one, work, chunksize=4):
            out[name][str(seed)] = r
    return {name: dict(sorted(d.items(), key=lambda kv: int(kv[0]))) for name, d in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.sim.determinism", description=__doc__)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="write the per-seed results here")
    g.add_argument("--compare", help="compare with the per-seed results in this file")
    ap.add_argument("--seeds", type=int, default=200, help="seeds 1..N of each config (default 200)")
    ap.add_argument("--config", action="append", type=Path,
                    help="config (repeatable; default the example and tests/sim/configs/*)")
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args(argv)
    configs = a.config or CONFIGS
    now = compute(configs, a.seeds, a.jobs)
    nviol = sum(len(r["violations"]) for d in now.values() for r in d.values())
    total = sum(len(d) for d in now.values())
    if a.out:
        Path(a.out).write_text(json.dumps(now, indent=1) + "\n")
        print(f"determinism: {total} runs written to {a.out} ({nviol} violations)")
        return 0
    before = json.loads(Path(a.compare).read_text())
    differ = [(name, seed) for name, d in now.items() for seed, r in d.items()
              if before.get(name, {}).get(seed) != r]
    for name, seed in differ[:20]:
        print(f"{name} seed {seed}: before {before.get(name, {}).get(seed)}\n"
              f"{' ' * len(name)}  now    {now[name][seed]}")
    print(f"determinism: {total} runs, {len(differ)} differ from {a.compare} ({nviol} violations)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
