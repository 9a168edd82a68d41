"""How much Python the engine runs per event at rest: a count, not a time.

    .venv/bin/python bench/engine_ops.py [CONFIG]

A fault-free pair runs in the simulator (tests/sim, virtual clock) for 30 s; from 5 s on,
every `Engine.handle` call is traced (sys.settrace with opcode events) and counted: bytecodes
and Python function calls per call, by event type. The count is the same on every run and
machine (one Python version), so an engine change can be judged by it where the at-rest CPU
of a shared machine is too noisy to show 20 %. What a bytecode costs at rest (cold caches,
~10 wakeups a second) is for bench/rest_pair.py to say.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.sim.world import World  # noqa: E402

from dnspair.core.engine import Engine  # noqa: E402

WARMUP, DURATION = 5.0, 30.0


def main() -> int:
    cfg_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "example" / "dnspair.yaml"
    ops: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    events: Counter[str] = Counter()
    world: World | None = None
    real = Engine.handle

    def counted(self, now, *evs):
        if world is None or world.now < WARMUP:
            return real(self, now, *evs)
        kind = "+".join(type(e).__name__ for e in evs)
        events[kind] += 1

        def tracer(frame, event, arg):
            if event == "call":
                calls[kind] += 1
                frame.f_trace_opcodes = True
                return tracer
            if event == "opcode":
                ops[kind] += 1
            return tracer
        sys.settrace(tracer)
        try:
            return real(self, now, *evs)
        finally:
            sys.settrace(None)

    Engine.handle = counted  # type: ignore[method-assign]
    try:
        world = World(cfg_path.read_text(), {"seed": 1, "duration": DURATION, "counters": [1, 2],
                                             "start": [0.0, 0.05], "faults": []})
        world.run(settle=0.0)
    finally:
        Engine.handle = real  # type: ignore[method-assign]
    n = sum(events.values())
    print(f"engine at rest, {cfg_path.name}, {DURATION - WARMUP:g} s of a fault-free pair "
          f"(both nodes): {n} handle calls")
    print(f"{'event':<24}{'calls':>7}{'bytecodes/call':>16}{'functions/call':>16}")
    for kind, k in events.most_common():
        print(f"{kind:<24}{k:>7}{ops[kind] / k:>16.0f}{calls[kind] / k:>16.1f}")
    print(f"{'all':<24}{n:>7}{sum(ops.values()) / n:>16.0f}{sum(calls.values()) / n:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
