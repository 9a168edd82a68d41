"""Fault schedules drawn from a seed, and their JSON form (what --schedule FILE replays).

A schedule: {"seed", "duration" (s of faults), "counters" (each node's persisted start counter),
"start" (each daemon's start time), "faults": [{kind, at, dur, ...}]} (faults.py lists kinds).
"""
from __future__ import annotations

import json
import random

# kind: weight
WEIGHTS = {
    "loss": 3, "delay": 2, "dup": 1, "partition": 2, "carrier": 2, "bind": 3, "freeze": 3,
    "crash": 2, "stop": 1, "power": 2, "slow": 1, "isolate": 1, "standby": 1, "cleanup": 1,
    "move": 0.5, "replay": 1, "garbage": 1,
}
# Hostile control-socket lines in this share of schedules, drawn apart so the other draws (and
# every seed found before they were added) stay as they were.
CONTROL_SHARE = 0.3
PROCESS = ("freeze", "crash", "stop", "power")   # one at a time per node
FIRST = 1.5       # no faults before this: the pair has started


def _r(x: float) -> float:
    return round(x, 3)


def generate(seed: int) -> dict:
    rng = random.Random(seed)
    duration = _r(rng.uniform(20, 60))
    nfaults = rng.randint(5, 15)
    kinds, weights = zip(*WEIGHTS.items(), strict=True)
    faults: list[dict] = []
    busy: list[list[tuple[float, float]]] = [[], []]
    tries = 0
    while len(faults) < nfaults and tries < 200:
        tries += 1
        kind = rng.choices(kinds, weights)[0]
        f = _draw(rng, kind)
        latest = duration - f["dur"] - 0.5
        f["at"] = _r(rng.uniform(FIRST, latest)) if latest > FIRST else FIRST
        if f["at"] + f["dur"] > duration:
            continue
        if kind in PROCESS:
            span = (f["at"] - 0.5, f["at"] + f["dur"] + 0.5)
            if any(a < span[1] and span[0] < b for a, b in busy[f["node"]]):
                continue
            busy[f["node"]].append(span)
        faults.append(f)
    counters = [rng.randint(0, 1000), rng.randint(0, 1000)]
    start = [0.0, _r(rng.uniform(0, 0.3))]
    crng = random.Random(f"control:{seed}")
    if crng.random() < CONTROL_SHARE:
        faults.append({"kind": "control", "node": crng.randrange(2), "count": crng.randint(1, 20),
                       "dur": 0.0, "at": _r(crng.uniform(FIRST, duration - 0.5))})
    faults.sort(key=lambda f: f["at"])
    return {"seed": seed, "duration": duration, "counters": counters, "start": start, "faults": faults}


def _draw(rng: random.Random, kind: str) -> dict:
    node = rng.randrange(2)
    link = rng.choice(["all", 0, 1])
    d = rng.choice([0, 1, 2, 2])
    if kind == "loss":
        p = rng.choice([rng.uniform(0.05, 0.5), rng.uniform(0.5, 1.0)])
        return {"kind": kind, "link": link, "dir": d, "p": _r(p), "dur": _r(rng.uniform(0.5, 10))}
    if kind == "delay":
        return {"kind": kind, "link": link, "dir": d, "delay": _r(rng.uniform(0.001, 0.03)),
                "jitter": _r(rng.uniform(0, 0.03)), "dur": _r(rng.uniform(0.5, 10))}
    if kind == "dup":
        return {"kind": kind, "link": link, "dir": d, "p": _r(rng.uniform(0.1, 0.5)),
                "dur": _r(rng.uniform(0.5, 10))}
    if kind == "partition":
        return {"kind": kind, "link": link, "dir": d, "dur": _r(rng.uniform(0.05, 5))}
    if kind == "carrier":
        return {"kind": kind, "node": node, "link": rng.choice([0, 0, 1]), "dur": _r(rng.uniform(0.05, 3))}
    if kind == "bind":
        mode = rng.choice(["stopped", "hung", "slow"])
        f = {"kind": kind, "node": node, "mode": mode, "dur": _r(rng.uniform(0.2, 5))}
        if mode == "slow":
            f["latency"] = _r(rng.uniform(0.05, 0.6))
        return f
    if kind == "freeze":
        dur = rng.uniform(0.05, 0.3) if rng.random() < 0.6 else rng.uniform(0.3, 3)
        return {"kind": kind, "node": node, "dur": _r(dur)}
    if kind == "crash":
        hook = _r(rng.uniform(0.02, 0.5))
        return {"kind": kind, "node": node, "hook": hook, "dur": _r(hook + rng.uniform(0.1, 3)),
                "lose_state": rng.random() < 0.3}
    if kind == "stop":
        return {"kind": kind, "node": node, "dur": _r(rng.uniform(0.5, 3))}
    if kind == "power":
        return {"kind": kind, "node": node, "dur": _r(rng.uniform(1, 5)), "lose_state": rng.random() < 0.3}
    if kind == "slow":
        return {"kind": kind, "node": node, "lag": _r(rng.uniform(0.005, 0.08)),
                "dur": _r(rng.uniform(1, 10))}
    if kind == "isolate":
        return {"kind": kind, "node": node, "dur": _r(rng.uniform(0.2, 3))}
    if kind == "standby":
        return {"kind": kind, "node": node, "dur": _r(rng.uniform(1, 5))}
    if kind == "cleanup":
        return {"kind": kind, "node": node, "dur": 0.0}
    if kind == "move":
        return {"kind": kind, "node": node, "vip": rng.randrange(2), "to": rng.randrange(2), "dur": 0.0}
    if kind == "replay":
        return {"kind": kind, "node": node, "count": rng.randint(5, 50),
                "gap": _r(rng.uniform(0.001, 0.05)), "dur": 0.0}
    if kind == "garbage":
        return {"kind": kind, "node": node, "count": rng.randint(1, 20), "dur": 0.0}
    raise ValueError(kind)


def dumps(schedule: dict) -> str:
    """One fault per line: readable, diffable, and loads() gives the same schedule back."""
    head = {k: v for k, v in schedule.items() if k != "faults"}
    lines = [json.dumps(f, sort_keys=True) for f in schedule["faults"]]
    body = ",\n    ".join(lines)
    return (json.dumps(head, sort_keys=True)[:-1]
            + f', "faults": [\n    {body}\n]}}' if lines else json.dumps(schedule, sort_keys=True))


def loads(text: str) -> dict:
    s = json.loads(text)
    if not isinstance(s, dict) or not isinstance(s.get("faults"), list):
        raise ValueError("a schedule is a JSON object with a list under \"faults\"")
    return s
