"""A loopback stand-in for the Hugging Face hub's download protocol, for the pull tests.

It answers what ``huggingface_hub`` 2.x asks when it downloads a file (read from its
``file_download.py``): two stdlib HTTP servers on 127.0.0.1, the hub (``HF_ENDPOINT``) and a CDN on
another port, since the real hub redirects LFS files to another host (and the client then keeps the
token to itself).

Hub:
- ``HEAD|GET /{repo}/resolve/{revision}/{file}``: for an LFS file, ``302`` to the CDN with
  ``X-Repo-Commit`` (the commit), ``X-Linked-Etag`` (the sha256, quoted), ``X-Linked-Size`` and the
  git blob id as ``ETag``; for a small non-LFS file, ``200`` with the bytes and ``ETag`` = blob id.
  A file the repo lacks: ``404`` with ``X-Error-Code: EntryNotFound``; an unknown repo: ``401`` with
  ``X-Error-Code: RepoNotFound`` (what the hub answers an anonymous client); a gated repo asked
  without ``Authorization: Bearer <token>``: ``401`` with ``X-Error-Code: GatedRepo``.
- ``GET /api/models/{repo}/tree/{revision}``: the repo's files as JSON (``list_repo_tree``).

CDN: ``GET /blobs/{sha256}``, honouring ``Range: bytes=N-`` with ``206`` and ``Content-Range``.
Failure modes, each for the next ``n`` downloads: ``drop_after`` (send the headers of the whole
body, then that many bytes, then close the connection), ``stall_after`` (send that many bytes and
wait until released: a client killed mid-download), ``corrupt`` (flip one byte of the body).

Every request is recorded as (server, method, path, headers) for the tests to assert on.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:  # git's blob id: sha1 of "blob <size>\0" + bytes
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class Repo:
    commit: str
    files: dict[str, HubFile] = field(default_factory=dict)
    gated_token: str | None = None


@dataclass
class Failure:
    kind: str  # "drop", "stall" or "corrupt"
    after: int = 0
    times: int = 1


class LoopbackHub:
    """``with LoopbackHub() as hub: hub.add("owner/name", "file.gguf", data)``; ``hub.endpoint``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str, dict[str, str]]] = []
        self.failures: list[Failure] = []
        self.stalled = threading.Event()  # set when a stalled download has sent its bytes
        self.release = threading.Event()  # set to let a stalled download finish (by closing)
        self._lock = threading.Lock()
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        for server in (self.hub, self.cdn):
            server.daemon_threads = True
        self._threads = [
            threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in (self.hub, self.cdn)
        ]

    # -- set-up ----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    def add(self, repo: str, file: str, data: bytes, *, lfs: bool = True, gated_token: str | None = None) -> HubFile:
        commit = hashlib.sha1(f"commit of {repo}".encode()).hexdigest()
        r = self.repos.setdefault(repo, Repo(commit=commit))
        r.gated_token = gated_token or r.gated_token
        r.files[file] = HubFile(data, lfs)
        return r.files[file]

    def fail_next(self, kind: str, after: int = 0, times: int = 1) -> None:
        self.failures.append(Failure(kind, after, times))

    def cdn_gets(self) -> list[dict[str, str]]:
        """The headers of every GET the CDN received."""
        return [h for server, method, _, h in self.requests if server == "cdn" and method == "GET"]

    def __enter__(self) -> LoopbackHub:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    # -- serving ---------------------------------------------------------------------------------

    def _blob(self, sha: str) -> HubFile | None:
        for r in self.repos.values():
            for f in r.files.values():
                if f.sha256 == sha:
                    return f
        return None

    def _next_failure(self) -> Failure | None:
        with self._lock:
            if not self.failures:
                return None
            failure = self.failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self.failures.pop(0)
            return failure

    def _handler(self, role: str) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                with hub._lock:
                    hub.requests.append(
                        (role, self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
                self._record()
                self._route(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                self._route(body=True)

            def _reply(self, status: int, headers: dict[str, str], body: bytes = b"", send: bool = True) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send and body:
                    self.wfile.write(body)

            def _route(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                if role == "cdn":
                    m = re.fullmatch(r"/blobs/([0-9a-f]{64})", path)
                    blob = hub._blob(m.group(1)) if m else None
                    if blob is None:
                        self._reply(404, {}, b"no such blob", body)
                    else:
                        self._bytes(blob.data, {}, body)
                    return
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        self._reply(401, {"X-Error-Code": "RepoNotFound"}, b"{}", body)
                        return
                    listing = [
                        {"type": "file", "path": name, "size": len(f.data), "oid": f.blob_id}
                        | ({"lfs": {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}} if f.lfs else {})
                        for name, f in repo.files.items()
                    ]
                    self._reply(200, {"Content-Type": "application/json"}, json.dumps(listing).encode(), body)
                    return
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if not m:
                    self._reply(404, {}, b"not found", body)
                    return
                repo = hub.repos.get(m.group(1))
                if repo is None:
                    self._reply(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                    return
                if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
                    msg = (
                        f"Access to model {m.group(1)} is restricted. You must have access to it and be authenticated."
                    )
                    self._reply(401, {"X-Error-Code": "GatedRepo", "X-Error-Message": msg})
                    return
                f = repo.files.get(m.group(3))
                if f is None:
                    self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}, b"", body)
                    return
                common = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.blob_id}"', "Accept-Ranges": "bytes"}
                if f.lfs:
                    cdn = f"http://127.0.0.1:{hub.cdn.server_address[1]}/blobs/{f.sha256}"
                    lfs = {"Location": cdn, "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))}
                    self._reply(302, {**common, **lfs}, b"Found. Redirecting", body)
                else:
                    self._bytes(f.data, common, body)

            def _bytes(self, data: bytes, headers: dict[str, str], body: bool) -> None:
                start = 0
                rng = self.headers.get("Range")
                status = 200
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if not m or int(m.group(1)) >= len(data):
                        self._reply(416, {"Content-Range": f"bytes */{len(data)}"})
                        return
                    start = int(m.group(1))
                    end = int(m.group(2)) + 1 if m.group(2) else len(data)
                    status, headers = 206, {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
                    data_out = data[start:end]
                else:
                    data_out = data
                failure = hub._next_failure() if body else None
                if failure is not None and failure.kind == "corrupt":
                    i = len(data_out) // 2
                    data_out = data_out[:i] + bytes([data_out[i] ^ 0xFF]) + data_out[i + 1 :]
                    failure = None
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data_out)))
                self.end_headers()
                if not body:
                    return
                if failure is None:
                    self.wfile.write(data_out)
                    return
                self.wfile.write(data_out[: failure.after])
                self.wfile.flush()
                if failure.kind == "stall":
                    hub.stalled.set()
                    hub.release.wait(60)
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        return Handler


def write_padded_gguf(path: Path, mib: float, seed: int = 0) -> Path:
    """A valid GGUF of about ``mib`` MiB (llama architecture, one f32 tensor of random numbers): big
    enough for a download to span several chunks; its header passes ``inspect_gguf``. Not loadable
    as a model (it has no layers)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("padded-test-file")
    n = int(mib * (1 << 20) / 4)
    writer.add_tensor("pad.weight", np.random.default_rng(seed).standard_normal(n).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
