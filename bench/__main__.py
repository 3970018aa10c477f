"""`python -m bench [NAME ...]`: run benchmarks, print a table, save JSON under bench/results/."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import socket
import sys
from pathlib import Path

from bench import Figure, machine

BENCHMARKS = ("ack", "overhead", "duty", "camera", "flops", "gpu", "soak", "smoke", "memory")
ON_REQUEST = ("soak", "smoke", "memory")
"""Not part of a plain `python -m bench`: they ask whether things work, not how fast (memory
rewrites the planner's committed footprints)."""
RESULTS = Path(__file__).parent / "results"


def default_benchmarks() -> list[str]:
    """All of them; `gpu` only where there is a CUDA GPU (it measures nothing elsewhere)."""
    import torch

    return [
        name
        for name in BENCHMARKS
        if name not in ON_REQUEST and (name != "gpu" or torch.cuda.is_available())
    ]


def result_path(stamp: datetime.datetime, suffix: str = "") -> Path:
    return RESULTS / f"{stamp:%Y-%m-%d}-{socket.gethostname()}{suffix}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: bench/results/DATE-HOST.json)")
    parser.add_argument("--jobs", type=int, default=None, help="soak: how many jobs (default 300)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="flops: count each clip at N frames instead of its default")
    parser.add_argument("--half-frames", action="store_true",
                        help="flops: also count each clip as HALF_FRAMES renders it (fewer frames, then RIFE)")
    args = parser.parse_args(argv)
    names = args.names or default_benchmarks()
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    if (args.frames is not None or args.half_frames) and names != ["flops"]:
        # A variant count belongs in its own results file, never the day's full run.
        parser.error("--frames and --half-frames count flops alone: python -m bench flops --frames N")
    figures: dict[str, list[Figure]] = {}
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        if name == "soak" and args.jobs is not None:
            figures[name] = module.run(jobs=args.jobs)
        elif name == "flops" and (args.frames is not None or args.half_frames):
            try:
                figures[name] = module.run(frames=args.frames, half_frames=args.half_frames)
            except ValueError as exc:
                parser.error(str(exc))
        else:
            figures[name] = module.run()

    # One benchmark alone gets its own file, so it never replaces the day's full run (nor a
    # variant of flops the plain count).
    alone = names[0] if len(names) == 1 else ""
    if alone == "flops":
        from bench.flops import suffix

        return report(figures, args.out, suffix=suffix(args.frames, args.half_frames))
    return report(figures, args.out, suffix=f"-{alone}" if alone else "")


def report(figures: dict[str, list[Figure]], out: Path | None = None, *, suffix: str = "") -> int:
    """Print the table, save the JSON (default bench/results/DATE-HOST{suffix}.json); the exit
    status is 1 when a figure misses its target."""
    rows = [("benchmark", "figure", "value", "target", "met")]
    for name, items in figures.items():
        for f in items:
            target = "" if f.target is None else f"{'≥' if f.higher_is_better else '≤'} {f.target:g} {f.unit}"
            met = "" if f.met is None else ("yes" if f.met else "NO")
            rows.append((name, f.name, f"{f.value:.3g} {f.unit}", target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))

    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = out or result_path(stamp, suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": stamp.isoformat(timespec="seconds"),
                "machine": machine(),
                "figures": {name: [f.as_dict() for f in items] for name, items in figures.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {out}", file=sys.stderr)
    return 0 if all(f.met is not False for items in figures.values() for f in items) else 1


if __name__ == "__main__":
    sys.exit(main())
