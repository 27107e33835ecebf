"""Servers on loopback for the server-backend tests.

``LlamaServer`` runs llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``,
its ``[server]`` extra) in a subprocess on 127.0.0.1; it can be killed and started again on the
same port. ``StubServer`` is a stdlib ``http.server`` in a thread that answers from a script of
canned replies, for failures a real server will not produce on demand (500s, hangs, ``n``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVER_DEPS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def missing_server_deps() -> list[str]:
    """The modules of llama-cpp-python's [server] extra that are not installed."""
    return [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF on 127.0.0.1."""

    def __init__(
        self, model: Path, log_dir: Path, *, port: int | None = None, api_key: str | None = None, n_ctx: int = 512
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.port = port or free_port()
        self.api_key = api_key
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> LlamaServer:
        cmd = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", "1", "--verbose", "False",
        ]  # fmt: skip
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout} s: {self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for the key
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as a crashed or preempted one would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


Reply = tuple[int, dict[str, Any]] | Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class StubServer:
    """Answers POSTs from ``replies`` in order (the last one repeats); records every request body.
    A reply is ``(status, json)`` or a function of the request body returning one; a reply with
    status 0 sleeps ``json["sleep"]`` seconds and then answers ``json["then"]``."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.requests.append((self.path, body))
                    reply = stub.replies[min(len(stub.requests), len(stub.replies)) - 1]
                status, data = reply(body) if callable(reply) else reply
                if status == 0:
                    time.sleep(data["sleep"])
                    status, data = data["then"]
                raw = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(texts: list[str], *, finish: str = "stop", usage: int = 5) -> dict[str, Any]:
    """A /completions answer with one choice per text."""
    return {
        "object": "text_completion",
        "choices": [{"index": i, "text": t, "finish_reason": finish} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 3, "completion_tokens": usage * len(texts)},
    }
