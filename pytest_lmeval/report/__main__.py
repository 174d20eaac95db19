"""`python -m pytest_lmeval.report compare RUN [RUN ...] [-o compare.html]`: one page charting
each metric across runs (checkpoints, in the order given)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .html import render_compare
from .results import atomic_write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_lmeval.report", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="chart each metric across runs")
    cmp.add_argument("runs", nargs="+", type=Path, help="output folders (or their results.json), oldest first")
    cmp.add_argument("-o", "--output", type=Path, default=Path("compare.html"))
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not (r / "results.json" if r.is_dir() else r).is_file()]
    if missing:
        parser.error(f"no results.json in: {', '.join(map(str, missing))}")
    atomic_write(args.output, render_compare(args.runs))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
