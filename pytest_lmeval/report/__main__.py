"""`python -m pytest_lmeval.report compare RUN [RUN ...] [-o compare.html]`: one page charting
each metric across runs (checkpoints, in the order given); `... summarize FOLDER [-o OUT]`: one
table of every run under a folder (markdown, JSON, LaTeX) and an HTML index of their reports;
`... serve FOLDER [--port N]`: that index and the reports, served on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.files import atomic_write
from .compare_page import render_compare
from .serve import DEFAULT_PORT, serve
from .summarize import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_lmeval.report", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="chart each metric across runs")
    cmp.add_argument("runs", nargs="+", type=Path, help="output folders (or their results.json), oldest first")
    cmp.add_argument("-o", "--output", type=Path, default=Path("compare.html"))
    summ = sub.add_parser("summarize", help="one table of every run under a folder, and an index page")
    summ.add_argument("folder", type=Path, help="a folder holding runs (e.g. reports/)")
    summ.add_argument("-o", "--output", type=Path, default=None, help="where to write (default: the folder)")
    srv = sub.add_parser("serve", help="write a folder's index, then serve the folder on 127.0.0.1 (Ctrl-C stops)")
    srv.add_argument("folder", type=Path, help="a folder holding runs (e.g. reports/)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        if not args.folder.is_dir():
            parser.error(f"not a folder: {args.folder}")
        for path in summarize(args.folder):
            print(f"wrote {path}")
        try:
            return serve(args.folder, args.port)
        except OSError as exc:  # the port is taken, or not ours to bind
            parser.exit(1, f"ERROR: cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}\n")
    if args.command == "summarize":
        if not args.folder.is_dir():
            parser.error(f"not a folder: {args.folder}")
        for path in summarize(args.folder, args.output):
            print(f"wrote {path}")
        return 0
    missing = [r for r in args.runs if not (r / "results.json" if r.is_dir() else r).is_file()]
    if missing:
        parser.error(f"no results.json in: {', '.join(map(str, missing))}")
    atomic_write(args.output, render_compare(args.runs))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
