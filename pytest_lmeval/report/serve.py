"""`python -m pytest_lmeval.report serve DIR [--port N]`: the folder of runs on localhost.

It first writes the folder's index (summarize.py: index.html and the summary tables), then
serves the folder with the standard library's HTTP server, bound to 127.0.0.1 only, so the index
and every run's report.html (and its `#doc=<task>/<doc_id>` links) open in a browser at the URL
it prints. `--port 0` takes any free port. Ctrl-C stops it cleanly (exit status 0)."""

from __future__ import annotations

import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one short line per request, on stderr
        sys.stderr.write(f"lmeval serve: {self.address_string()} {format % args}\n")


def make_server(folder: Path, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    handler = functools.partial(_Handler, directory=str(folder))
    return ThreadingHTTPServer((HOST, port), handler)


def serve(folder: Path, port: int = DEFAULT_PORT, out: TextIO | None = None) -> int:
    """Serve `folder` until Ctrl-C; the exit status (0)."""
    out = out or sys.stdout
    server = make_server(folder, port)
    url = f"http://{HOST}:{server.server_address[1]}/"
    print(f"lmeval: serving {folder} at {url} (Ctrl-C stops)", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("lmeval: stopped", file=out, flush=True)
    finally:
        server.server_close()
    return 0
