"""A local stand-in for the Hugging Face hub's HTTP API, as much of it as `HfApi.create_repo`
and `HfApi.upload_file` (regular, non-LFS files) use: repos are created, and each commit's
files are kept in memory by repo and path, with the token each request carried.

It checks no permissions and speaks no LFS or Xet: files the client would send that way are
out of its reach (a run's results.json and samples are small, regular files)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HubEndpoint:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}  # repo_id -> the create request (type, private)
        self.files: dict[str, dict[str, bytes]] = {}  # repo_id -> path -> content
        self.tokens: list[str] = []  # the Authorization header of every request
        self.unknown: list[str] = []  # requests it could not answer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                hub.tokens.append(self.headers.get("Authorization", ""))
                if self.path.startswith("/api/whoami"):
                    return self._send(200, {"name": "tester", "type": "user"})
                hub.unknown.append(f"GET {self.path}")
                self._send(404, {"error": "not here"})

            def do_POST(self) -> None:
                hub.tokens.append(self.headers.get("Authorization", ""))
                body = self._body()
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] == ["api", "repos", "create"]:
                    req = json.loads(body)
                    repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    hub.repos.setdefault(repo_id, req)
                    return self._send(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    return self._send(200, {"files": modes, "commitOid": "0" * 40})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "commit":
                    repo_id = f"{parts[2]}/{parts[3]}"
                    if repo_id not in hub.repos:
                        return self._send(404, {"error": f"{repo_id}: no such repo"})
                    for line in body.decode().splitlines():
                        op = json.loads(line)
                        if op["key"] == "file":
                            value = op["value"]
                            hub.files.setdefault(repo_id, {})[value["path"]] = base64.b64decode(value["content"])
                    oid = "1" * 40
                    return self._send(
                        200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid}
                    )
                hub.unknown.append(f"POST {self.path}")
                self._send(404, {"error": "not here"})

        return Handler
