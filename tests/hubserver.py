"""A stand-in for the Hugging Face Hub on a loopback port: ``/<org>/<name>/resolve/<rev>/<file>``.

It answers HEAD and GET with the headers huggingface_hub reads (``ETag``, ``Content-Length``,
``X-Repo-Commit``), honours ``Range`` (so a broken-off download can resume), and can stop a
file's next GETs at a byte offset and drop the connection, to test what a broken download leaves behind.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub:
    """``with StandInHub({("timm/x", "model.safetensors"): data}) as hub: hub.url``."""

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.files = dict(files)
        # file -> (offset, GETs): the next GETs of that file stop at byte ``offset`` and drop the connection
        self.break_after: dict[tuple[str, str], tuple[int, int]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "StandInHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((handler.command, handler.path, handler.headers.get("Range", "")))
        match = re.fullmatch(r"/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", handler.path.split("?")[0])
        key = (match.group(1), match.group(3)) if match else None
        data: Optional[bytes] = self.files.get(key) if key else None
        if data is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound" if match else "RepoNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if ranged and body:
            start = int(ranged.group(1))
        handler.send_response(206 if start else 200)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not body:
            return
        limit, remaining = self.break_after.get(key, (None, 0))
        if limit is not None and remaining > 0:
            self.break_after[key] = (limit, remaining - 1)
            handler.wfile.write(data[start:max(start, limit)])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(data[start:])
