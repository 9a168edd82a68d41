"""Run schedules, check them, shrink the failing ones to a minimal replayable schedule."""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from . import checks, known
from . import schedule as schedmod
from .world import World

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "example" / "dnspair.yaml"


def run_one(cfg_text: str, sch: dict, engine_factory=None, trace: bool = False):
    """(record, violations) of one schedule."""
    w = World(cfg_text, sch, engine_factory=engine_factory, trace=trace)
    rec = w.run()
    return rec, checks.check(rec, w.cfg, sch), w


def same_invariants(want: set[str]):
    """A shrink predicate: any violation of one of these invariants."""
    return lambda viol, rec, w, sch: bool({v.invariant for v in viol} & want)


def shrink(cfg_text: str, sch: dict, keep, engine_factory=None,
           budget_s: float = 60.0, max_runs: int = 400) -> tuple[dict, list]:
    """Delta debugging: drop chunks of faults, then shorten what is left, while
    keep(violations, record, world, schedule) holds. Returns (schedule, its violations)."""
    deadline = time.monotonic() + budget_s
    runs = 0
    best = copy.deepcopy(sch)
    best_v = run_one(cfg_text, best, engine_factory)[1]

    def fails(s) -> list | None:
        nonlocal runs
        if runs >= max_runs or time.monotonic() > deadline:
            return None
        runs += 1
        _fit(s)
        rec, v, w = run_one(cfg_text, s, engine_factory)
        return v if v and keep(v, rec, w, s) else None

    # 1. ddmin over the fault list
    n = 2
    while len(best["faults"]) >= 1:
        faults = best["faults"]
        size = max(1, len(faults) // n)
        chunks = [faults[i:i + size] for i in range(0, len(faults), size)]
        for i in range(len(chunks)):
            trial = dict(best, faults=[f for j, c in enumerate(chunks) if j != i for f in c])
            v = fails(trial)
            if v is not None:
                best, best_v = trial, v
                n = max(n - 1, 2)
                break
        else:
            if size == 1:
                break
            n = min(len(faults), n * 2)
    # 2. shorten each fault and its numbers, and move it earlier
    changed = True
    while changed:
        changed = False
        for i, f in enumerate(best["faults"]):
            for key, lo in (("dur", 0.01), ("count", 1), ("at", 1.5)):
                if key not in f or f[key] <= lo:
                    continue
                new = max(lo, round(f[key] / 2, 3)) if key != "count" else max(lo, f[key] // 2)
                if key == "dur" and f["kind"] == "crash":
                    new = max(new, f.get("hook", 0) + 0.01)
                g = dict(f, **{key: new})
                trial = dict(best, faults=best["faults"][:i] + [g] + best["faults"][i + 1:])
                v = fails(trial)
                if v is not None:
                    best, best_v, changed = trial, v, True
                    break
            if changed:
                break
    _fit(best)
    return best, best_v


def _fit(s: dict) -> None:
    """The run ends soon after the last fault: shorter schedules are easier to read."""
    s["faults"].sort(key=lambda f: f["at"])
    s["duration"] = round(max([1.5] + [f["at"] + f.get("dur", 0.0) for f in s["faults"]]) + 0.5, 3)


_shrinks_left = None


def init_worker(counter) -> None:
    global _shrinks_left
    _shrinks_left = counter


def _may_shrink() -> bool:
    if _shrinks_left is None:
        return True
    with _shrinks_left.get_lock():
        if _shrinks_left.value <= 0:
            return False
        _shrinks_left.value -= 1
        return True


def check_seed(args) -> dict:
    """Worker: one seed; a failing one is shrunk (while the shared shrink allowance lasts)."""
    seed, cfg_text = args
    sch = schedmod.generate(seed)
    t0 = time.perf_counter()
    rec, viol, w = run_one(cfg_text, sch)
    cpu = time.perf_counter() - t0
    out = {"seed": seed, "violations": [str(v) for v in viol],
           "known": [known.classify(v, rec, w.cfg, sch) for v in viol],
           "virtual": rec.converged["after_cleanup"]["t"],
           "cpu": cpu, "calls": rec.calls, "events": rec.events, "pid": os.getpid()}
    if viol and _may_shrink():
        # Keep what is new if there is any: shrink to an unclassified violation, else to the
        # same known defects.
        labels = {k for k in out["known"]}
        want = {None} if None in labels else labels

        def keep(v2, rec2, w2, s2):
            return any(known.classify(v, rec2, w2.cfg, s2) in want for v in v2)
        small, sv = shrink(cfg_text, sch, keep)
        out["minimal"] = schedmod.dumps(small)
        out["minimal_violations"] = [str(v) for v in sv]
    return out
