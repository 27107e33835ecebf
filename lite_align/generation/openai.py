"""Generation on an OpenAI-compatible server (vLLM, llama.cpp's llama-server, llama-cpp-python's
server, TGI), behind the same interface as ``engine.LlamaCppGenerator``.

How ``OpenAIGenerator.generate`` talks to the server:

* **Endpoints.** A request carrying chat messages goes to ``{base_url}/chat/completions`` (the
  server applies the model's chat template); a plain prompt goes to ``{base_url}/completions``
  with exactly the text the study formatted. Until ``GenerationRequest`` has a ``messages`` field,
  ``render_chat`` returns the messages as JSON behind :data:`CHAT_MARKER` and ``generate`` decodes
  them back, so the study's current ``render_chat`` -> ``prompt`` path reaches the chat endpoint.
* **Sampling.** The study's settings, with every truncation switched off in the spellings the
  common servers read: ``top_p=1``, ``top_k=0``, ``min_p=0``; the repetition penalty is sent both
  as ``repeat_penalty`` (llama.cpp) and ``repetition_penalty`` (vLLM, TGI). A server that rejects
  one of these optional fields (a 400/422 naming it) gets the request again without it; the
  dropped names are listed in ``info``.
* **n samples.** A request with several seeds at temperature > 0 is first sent once with ``n``.
  If the server returns fewer choices (llama-cpp-python ignores ``n``), or n identical texts, it
  does not honour ``n``: the returned choice, when there is exactly one, is kept as the first
  seed's sample and every other sample becomes its own request with its own ``seed``, so reruns
  are reproducible where the server honours seeds. With ``n`` the whole request is drawn from the
  first seed, and that is the seed its samples record.
* **Concurrency.** At most ``concurrency`` requests are in flight (threads, stdlib ``urllib``);
  each sample is yielded as soon as its request returns, so the study stores it at once and a
  crashed run resumes with only the missing samples.
* **Failures.** Timeouts, refused or dropped connections, 408, 429 and 5xx are retried with
  exponential backoff and jitter (:class:`RetryPolicy`: attempts and a deadline per call), each
  wait announced on stderr (at most one line every few seconds); any other 4xx is a one-line
  ``GenerationError`` naming the server and the status. :meth:`OpenAIGenerator.check_reachable`,
  called when a run opens the model, fails at once where nothing listens (connection refused) or
  the host name does not resolve, rather than retrying for a minute.

Left out: streaming, logprobs, several prompts in one completions request, shared-prefix hints
(servers cache prefixes themselves: vLLM ``--enable-prefix-caching``, llama-server by default).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lite_align.errors import ConfigError, GenerationError
from lite_align.generation.base import Backend, GenerationRequest, GenerationResult, SamplingParams, register_backend
from lite_align.jsonio import loads as json_loads

if TYPE_CHECKING:
    from lite_align.data import ModelRef

CHAT_MARKER = "\x00lite_align-chat-v1\x00"  # render_chat output: this marker, then the messages as JSON
DEFAULT_CONCURRENCY = 4
APPROX_BYTES_PER_TOKEN = 4  # the tokenize fallback when a server has no tokenize endpoint
OPTIONAL_FIELDS = ("top_k", "min_p", "repeat_penalty", "repetition_penalty", "repeat_last_n", "seed")
_RETRY_STATUSES = {408, 429}
NOTICE_EVERY_S = 5.0  # at most one "retrying" line on stderr this often, however many requests wait


def _stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one HTTP call: ``attempts`` tries within ``deadline_s`` seconds,
    each attempt allowed ``timeout_s``; between tries an exponential, jittered pause."""

    attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    deadline_s: float = 1800.0
    timeout_s: float = 600.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Pause before retry number ``retry`` (0-based): half of the capped exponential step is
        fixed, half drawn at random, so clients that failed together do not return together.

        >>> p = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)
        >>> 0.5 <= p.delay(0, random.Random(0)) <= 1.0 and 2.0 <= p.delay(5, random.Random(0)) <= 4.0
        True
        """
        step = min(self.max_delay_s, self.base_delay_s * 2.0**retry)
        return step / 2 + rng.uniform(0.0, step / 2)


def encode_chat(messages: Sequence[Mapping[str, str]]) -> str:
    """Messages as one string that ``decode_chat`` reverses (the ``render_chat`` stand-in).

    >>> decode_chat(encode_chat([{"role": "user", "content": "Hi?"}]))
    [{'role': 'user', 'content': 'Hi?'}]
    """
    return CHAT_MARKER + json.dumps([dict(m) for m in messages], ensure_ascii=False)


def decode_chat(prompt: str) -> list[dict[str, str]] | None:
    """The messages ``encode_chat`` wrote into ``prompt``, or None for a plain prompt."""
    if not prompt.startswith(CHAT_MARKER):
        return None
    return list(json_loads(prompt[len(CHAT_MARKER) :]))


def split_total(total: int, texts: Sequence[str]) -> list[int]:
    """Share a request's completion-token total among its choices in proportion to their text
    length plus one (the end token); a server reports one total for ``n`` choices. The shares add
    up to ``total``: largest remainders get the leftover tokens.

    >>> split_total(10, ["aaa", "a", ""])  # weights 4:2:1 -> 5.7, 2.9, 1.4
    [6, 3, 1]
    """
    weights = [len(t) + 1 for t in texts]
    shares = [total * w // sum(weights) for w in weights]
    order = sorted(range(len(texts)), key=lambda i: -(total * weights[i] % sum(weights)))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


# ---------------------------------------------------------------------------------------------
# HTTP: one JSON POST with retries
# ---------------------------------------------------------------------------------------------


class _Rejected(Exception):
    """A 4xx the server will answer again the same way."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class _Retryable(Exception):
    """A failure worth another try (timeout, connection, 408/429/5xx)."""


def _error_text(body: bytes) -> str:
    """The server's own words from an error body (OpenAI, FastAPI or plain text), one line."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json_loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message", text)))
        if isinstance(err, dict):
            err = err.get("message", err)
        text = err if isinstance(err, str) else json.dumps(err)
    return " ".join(text.split())[:300]


class _Client:
    """POSTs JSON to one server; thread-safe; counts requests and retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        seed: int = 0,
        notify: Callable[[str], None] = _stderr_line,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = re.sub(r"/v1$", "", self.base_url)  # where /tokenize and /extras live
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.retry = retry
        self.dropped: list[str] = []  # optional fields the server refused
        self.counts = {"requests": 0, "retries": 0, "wait_s": 0.0}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._notify = notify
        self._last_notice = -math.inf

    def _count(self, key: str, value: float = 1) -> None:
        with self._lock:
            self.counts[key] += value

    def _once(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, headers=self._headers, method="POST")
        self._count("requests")
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.retry.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                message = _error_text(exc.read() or b"")
            except (OSError, http.client.HTTPException):
                message = str(exc.reason or "")
            if exc.code >= 500 or exc.code in _RETRY_STATUSES:
                raise _Retryable(f"HTTP {exc.code}: {message}") from None
            raise _Rejected(exc.code, message) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(exc).__name__}: {reason}") from None
        finally:
            self._count("wait_s", time.perf_counter() - t0)
        try:
            out = json_loads(raw)
        except ValueError:
            raise GenerationError(
                f"server {url} answered with something that is not JSON ({raw[:60]!r}); check base_url in models.toml"
            ) from None
        if not isinstance(out, dict):
            raise GenerationError(f"server {url} answered with JSON that is not an object; check base_url")
        return out

    def post(self, path: str, body: dict[str, Any], stop: threading.Event | None = None) -> dict[str, Any]:
        """POST ``body`` to ``path`` (relative to base_url, or absolute) and return the JSON answer.

        Retries what may pass (see :class:`_Retryable`); a 400/422 that names one of
        :data:`OPTIONAL_FIELDS` drops that field for this and every later call; raises
        ``_Rejected`` for any other 4xx and ``GenerationError`` when the retries run out."""
        url = path if "://" in path else self.base_url + path
        deadline = time.monotonic() + self.retry.deadline_s
        failures = 0
        while True:
            sent = {k: v for k, v in body.items() if k not in self.dropped}
            try:
                return self._once(url, sent)
            except _Rejected as exc:
                field = self._refused_field(exc, sent)
                if field is None:
                    raise
                with self._lock:
                    if field not in self.dropped:
                        self.dropped.append(field)
                continue
            except _Retryable as exc:
                failures += 1
                with self._lock:
                    pause = self.retry.delay(failures - 1, self._rng)
                out_of_time = time.monotonic() + pause > deadline
                if failures >= self.retry.attempts or out_of_time:
                    why = f"{failures} attempts" if not out_of_time else f"the {self.retry.deadline_s:g} s deadline"
                    raise GenerationError(
                        f"server {self.base_url} failed after {why} (last: {exc}); check that it is running "
                        f"and reachable, then rerun the same command to resume"
                    ) from None
                self._count("retries")
                self._announce(
                    f"server {self.base_url}: {exc}; retrying in {pause:.1f} s "
                    f"(attempt {failures + 1} of at most {self.retry.attempts})"
                )
                if stop is None:
                    time.sleep(pause)
                elif stop.wait(pause):  # the caller stopped or failed: nobody wants this answer
                    raise GenerationError("generation was cancelled") from None

    def _announce(self, message: str) -> None:
        """Say on stderr that a call waits to be retried, at most once every NOTICE_EVERY_S seconds."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_notice < NOTICE_EVERY_S:
                return
            self._last_notice = now
        self._notify(message)

    def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Raise a one-line GenerationError at once when nothing listens at the server's address
        (connection refused) or its host name does not resolve; any HTTP answer, even an error
        status, means it is there. Other failures (a timeout) are left to the retries."""
        req = urllib.request.Request(self.base_url + "/models", headers=self._headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            raise GenerationError(
                f"server {self.base_url} refused the connection (nothing listens there); start the server, "
                "or fix base_url in models.toml, then rerun"
            )
        if isinstance(reason, socket.gaierror):
            raise GenerationError(
                f"server {self.base_url}: its host name does not resolve ({reason.strerror}); "
                "fix base_url in models.toml"
            )

    @staticmethod
    def _refused_field(exc: _Rejected, sent: Mapping[str, Any]) -> str | None:
        if exc.status not in (400, 422):
            return None
        for field in OPTIONAL_FIELDS:
            if field in sent and re.search(rf"\b{field}\b", exc.message):
                return field
        return None


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One HTTP request: some samples of one GenerationRequest."""

    request: GenerationRequest
    messages: list[dict[str, str]] | None
    indices: tuple[int, ...]  # sample indices into request.seeds
    with_n: bool = False  # all of ``indices`` in one request through ``n``


def _finish_reason(value: object) -> str:
    return "length" if value == "length" else "stop"


class OpenAIGenerator:
    """The study's ``Generator`` over an OpenAI-compatible HTTP server.

    ``base_url`` is the API root the server documents (usually ending in ``/v1``); ``model`` the
    name the server knows the model by; ``api_key_env`` names an environment variable holding a
    bearer token (its value is never logged or stored). ``use_n``: None tries ``n`` once and
    keeps whatever works, True always sends ``n``, False never does.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        name: str = "",
        api_key_env: str = "",
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        use_n: bool | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"model '{name or model}': base_url {base_url!r} must start with http:// or https://")
        if concurrency < 1:
            raise ConfigError(f"model '{name or model}': concurrency must be at least 1, got {concurrency}")
        api_key = ""
        if api_key_env:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise ConfigError(
                    f"model '{name or model}': api_key_env names {api_key_env}, which is not set; "
                    f"export {api_key_env}=<token> or remove api_key_env from models.toml"
                )
        self.name = name or model
        self.model = model
        self.concurrency = concurrency
        self.use_n = use_n
        self._client = _Client(base_url, api_key, retry or RetryPolicy())
        self._tokenize_route: str | None = None  # "/tokenize", "/extras/tokenize" or "approximate"
        self._special_prefix: list[int] | None = None
        self._busy = False
        self._timings = {"wall_s": 0.0, "samples": 0.0}

    @classmethod
    def from_ref(cls, ref: ModelRef, **kw: Any) -> OpenAIGenerator:
        """A generator for a registry model with ``backend = "openai"``."""
        extra = ref.extra
        return cls(
            str(extra.get("base_url", "")),
            str(extra.get("model") or ref.name),
            name=ref.name,
            api_key_env=str(extra.get("api_key_env", "")),
            concurrency=int(extra.get("concurrency") or DEFAULT_CONCURRENCY),
            **kw,
        )

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Fail at once where no server listens (see ``_Client.check_reachable``)."""
        self._client.check_reachable(timeout_s)

    def close(self) -> None:
        """Nothing is held between calls (each request opens its own connection)."""

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the study reads --------------------------------------------------------------------

    @property
    def timings(self) -> dict[str, float]:
        """Cumulative: wall_s (inside generate), wait_s (summed over requests in flight, retries
        included), requests (HTTP calls), retries, samples."""
        return {**self._timings, **{k: float(v) for k, v in self._client.counts.items()}}

    @property
    def info(self) -> dict[str, Any]:
        """What this server turned out to support, for the run's manifest."""
        n_mode = {None: "untested", True: "n", False: "one request per seed"}[self.use_n]
        return {
            "base_url": self.base_url,
            "model": self.model,
            "samples_via": n_mode,
            "dropped_fields": list(self._client.dropped),
            "tokenizer": self._tokenize_route or "unused",
        }

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Not a rendering: the messages, marked, for ``generate`` to send to the chat endpoint
        (the server applies the model's template)."""
        if not add_generation_prompt:
            raise GenerationError(
                f"model '{self.name}' is served by {self.base_url}: chat endpoints always open the assistant's "
                "turn, so a chat prompt without the generation prompt cannot be sent"
            )
        return encode_chat(messages)

    # -- tokens ----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids from the server's tokenize endpoint (llama-server and vLLM ``/tokenize``,
        llama-cpp-python ``/extras/tokenize``). A server with neither gets an APPROXIMATION:
        one id ``-1`` per 4 UTF-8 bytes, so only the length means anything (``info`` says so)."""
        routes = [self._tokenize_route] if self._tokenize_route else ["/tokenize", "/extras/tokenize"]
        for route in routes:
            if route == "approximate":
                break
            try:
                tokens = self._tokenize_at(route, text, add_bos)
            except _Rejected as exc:
                if exc.status in (404, 405):
                    continue
                raise GenerationError(
                    f"server {self.base_url} refused to tokenize ({exc.status} {exc.message})"
                ) from None
            self._tokenize_route = route
            return tokens
        self._tokenize_route = "approximate"
        return [-1] * math.ceil(len(text.encode("utf-8")) / APPROX_BYTES_PER_TOKEN)

    def _tokenize_at(self, route: str, text: str, add_bos: bool) -> list[int]:
        url = self._client.root + route
        if route == "/tokenize":
            body = {"model": self.model, "content": text, "prompt": text, "add_special": add_bos}
            body["add_special_tokens"] = add_bos
            return [int(t) for t in self._client.post(url, body)["tokens"]]
        # llama-cpp-python always adds the special prefix (BOS): learn it once from "", strip it when unwanted
        tokens = [int(t) for t in self._client.post(url, {"model": self.model, "input": text})["tokens"]]
        if not add_bos:
            if self._special_prefix is None:
                empty = self._client.post(url, {"model": self.model, "input": ""})["tokens"]
                self._special_prefix = [int(t) for t in empty]
            k = len(self._special_prefix)
            if k and tokens[:k] == self._special_prefix:
                tokens = tokens[k:]
        return tokens

    # -- generation ------------------------------------------------------------------------------

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[GenerationResult]:
        """Yield every sample of every request as soon as its HTTP request returns (not in order)."""
        if self._busy:
            raise RuntimeError("generate() is already running on this generator")
        self._busy = True
        t0 = time.perf_counter()
        stop = threading.Event()  # tells requests still retrying to give up (error, or the caller stopped)
        todo: deque[_Job] = deque()
        held: list[_Job] = []  # n requests waiting for the probe to say whether n works
        for req in requests:
            messages = getattr(req, "messages", None) or decode_chat(req.prompt)
            for job in self._jobs(req, [dict(m) for m in messages] if messages else None):
                probe_pending = job.with_n and self.use_n is None and any(j.with_n for j in todo)
                (held if probe_pending else todo).append(job)
        # Daemon threads, not a ThreadPoolExecutor: Ctrl-C must not wait for requests still in flight.
        finished: queue.Queue[tuple[_Job, list[GenerationResult] | None, BaseException | None]] = queue.Queue()

        def work(job: _Job) -> None:
            try:
                finished.put((job, self._run(job, stop), None))
            except BaseException as exc:  # handed to the caller's thread
                finished.put((job, None, exc))

        running = 0
        try:
            while todo or running:
                while todo and running < self.concurrency:
                    threading.Thread(target=work, args=(todo.popleft(),), name="lite_align-http", daemon=True).start()
                    running += 1
                job, results, error = finished.get()
                running -= 1
                if error is not None:
                    raise error
                if job.with_n:
                    results = self._after_n(job, results, todo, held)
                for res in results or []:
                    self._timings["samples"] += 1
                    yield res
        finally:
            stop.set()
            self._timings["wall_s"] += time.perf_counter() - t0
            self._busy = False

    def _after_n(
        self, job: _Job, results: list[GenerationResult] | None, todo: deque[_Job], held: list[_Job]
    ) -> list[GenerationResult]:
        """The samples of an ``n`` request worth keeping; the rest go back into ``todo`` one per seed.
        The first such request (the probe) decides whether later ones use ``n``."""
        if self.use_n is None:
            self.use_n = results is not None and self._honours_n(job, results)
            if not self.use_n:
                # a server that ignored n answered one choice, drawn with the first seed: exactly what
                # that seed's own request gives, so it is kept; anything else is dropped
                results = results if results is not None and len(results) == 1 else []
            todo.extend(j for h in held for j in self._jobs(h.request, h.messages))
            held.clear()
        got = {r.sample_index for r in results or []}
        todo.extend(_Job(job.request, job.messages, (i,)) for i in job.indices if i not in got)
        return results or []

    def _wants_n(self, req: GenerationRequest) -> bool:
        return len(req.seeds) > 1 and req.params.temperature > 0 and self.use_n is not False

    def _jobs(self, req: GenerationRequest, messages: list[dict[str, str]] | None) -> list[_Job]:
        if self._wants_n(req):
            return [_Job(req, messages, tuple(range(len(req.seeds))), with_n=True)]
        return [_Job(req, messages, (i,)) for i in range(len(req.seeds))]

    @staticmethod
    def _honours_n(job: _Job, results: list[GenerationResult]) -> bool:
        texts = [r.text for r in results]
        return len(texts) == len(job.indices) and len(set(texts)) > 1

    def _body(self, job: _Job) -> dict[str, Any]:
        req, p = job.request, job.request.params
        body: dict[str, Any] = {"model": self.model}
        if job.messages is not None:
            body["messages"] = job.messages
        else:
            body["prompt"] = req.prompt
        body.update(_sampling_fields(p))
        body["seed"] = req.seeds[job.indices[0]]
        if job.with_n:
            body["n"] = len(job.indices)
        return body

    def _run(self, job: _Job, stop: threading.Event) -> list[GenerationResult] | None:
        """One HTTP request -> its samples (None: the server refused ``n``; send them one by one)."""
        path = "/chat/completions" if job.messages is not None else "/completions"
        t0 = time.perf_counter()
        try:
            answer = self._client.post(path, self._body(job), stop)
        except _Rejected as exc:
            if job.with_n and exc.status in (400, 422):
                return None
            raise GenerationError(_rejection_message(self, path, exc)) from None
        seconds = time.perf_counter() - t0
        return self._results(job, answer, seconds)

    def _results(self, job: _Job, answer: Mapping[str, Any], seconds: float) -> list[GenerationResult]:
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices:
            raise GenerationError(f"server {self.base_url} answered without choices; is it OpenAI-compatible?")
        choices = sorted(choices, key=lambda c: int(c.get("index", 0)))[: len(job.indices)]
        texts = [_choice_text(c) for c in choices]
        usage = answer.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion = split_total(int(usage.get("completion_tokens") or 0), texts)
        req = job.request
        seed = req.seeds[job.indices[0]]  # with n, every choice was drawn from the first seed
        return [
            GenerationResult(
                key=req.key,
                sample_index=index,
                seed=seed,
                text=text,
                completion_tokens=tokens,
                prompt_tokens=prompt_tokens,
                finish_reason=_finish_reason(choice.get("finish_reason")),
                seconds=seconds / len(choices),
            )
            for index, choice, text, tokens in zip(job.indices, choices, texts, completion, strict=False)
        ]


def _sampling_fields(p: SamplingParams) -> dict[str, Any]:
    """The study's sampling settings, truncation off, in the names the common servers read."""
    fields: dict[str, Any] = {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repeat_penalty": p.repetition_penalty,
        "repetition_penalty": p.repetition_penalty,
        "repeat_last_n": -1,  # llama-server: penalise over the whole context, as HF/TGI do
    }
    if p.stop:
        fields["stop"] = list(p.stop)
    return fields


def _choice_text(choice: Mapping[str, Any]) -> str:
    if "message" in choice:
        return str((choice.get("message") or {}).get("content") or "")
    return str(choice.get("text") or "")


def _rejection_message(gen: OpenAIGenerator, path: str, exc: _Rejected) -> str:
    hint = {
        401: "set the token: models.NAME.api_key_env names the environment variable that holds it",
        403: "the token is not allowed to use this model; check api_key_env",
        404: "check base_url (usually ending in /v1) and the model name in models.toml",
    }.get(exc.status, "check the model's entry in models.toml")
    return f"server {gen.base_url} refused {path} for model '{gen.model}' ({exc.status}: {exc.message}); {hint}"


__all__ = ["OpenAIGenerator", "RetryPolicy", "encode_chat", "decode_chat", "CHAT_MARKER"]


def _locate(spec: Any) -> tuple[str, dict[str, Any]]:
    """The served model's id (it stands for a path: two server models are one only when their URL
    and model name are) and the settings it is opened with."""
    model = spec.model or spec.name
    extra: dict[str, Any] = {"base_url": spec.base_url, "model": model, "api_key_env": spec.api_key_env}
    if spec.concurrency:
        extra["concurrency"] = spec.concurrency
    return f"{spec.backend}:{spec.base_url.rstrip('/')}#{model}", extra


register_backend(
    Backend(
        "openai",
        open=lambda ref, n_ctx, tuner: OpenAIGenerator.from_ref(ref),
        needs=("base_url",),
        identity=lambda ref: str(ref.path),
        record=lambda ref: {"backend": ref.backend, **dict(ref.extra)},
        locate=_locate,
        description="an OpenAI-compatible server (vLLM, llama.cpp's server, TGI) over HTTP",
    )
)
