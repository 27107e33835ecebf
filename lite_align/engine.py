"""llama.cpp generation: many samples of many prompts in one batched decode loop.

How one call to ``LlamaCppGenerator.generate`` spends its time:

* **Shared prefixes.** A request's ``prefix`` (instructions and static examples, the same for
  every prompt) is decoded once into a reserved sequence and copied into each request's sequence
  with ``llama_memory_seq_cp``; only the rest of the prompt is decoded. If the tokenizer merges
  across the boundary, only the tokens the prefix and the prompt have in common are shared. With
  ``prefix_cache_dir`` the prefix's KV state is also saved to disk and reloaded by later runs on
  the same model file.
* **Fork sampling.** A prompt is decoded once, into an *anchor* sequence; each of its n samples
  starts as a copy of the anchor and draws its first token from the prompt's logits with its own
  seed. Then the n samples decode together.
* **Continuous batching.** Up to ``max_sequences`` samples, from any number of requests, decode
  together: one ``llama_decode`` per step, one token per live sequence. A finished sequence
  leaves the batch and its KV cells are freed at once; new requests are admitted (their prompts
  read) as soon as a slot is free, so short answers never leave the batch half empty.
* **KV layout.** By default each sequence has its own KV stream (``kv_unified=False``): a copy
  is a memcpy of the stream, and a token's attention reads only its own sequence's cells, so a
  step costs the same whether answers are 100 or 700 tokens long. llama.cpp only batches
  consecutive sequence ids together across streams, so live samples are kept on one run of ids.
  With ``kv_unified=True`` all sequences share one cache: copies share cells (free), KV cells
  are reserved for the worst case (prompt + max_tokens per sample) so a decode never runs out
  of cache, and attention spans the whole used cache (faster for short answers, slower for long).
* **Sampling** (the paper's settings): HF/TGI repetition penalty over every token the sequence
  has seen (prompt and generated, each distinct token once), then temperature, then a draw from
  the full softmax, no top-k/top-p; argmax when temperature is 0. Each sample has its own
  ``numpy.random.Generator`` seeded from its seed, so a seed gives the same text in any process.
  Implemented in numpy on a zero-copy view of llama.cpp's logits (see ``sample_token``: faster
  than llama.cpp's own sampler chain on a 262k vocabulary).
* **Grammars.** A request whose ``SamplingParams.grammar`` holds GBNF text is constrained by
  llama.cpp's grammar sampler, one per sample (cloned from one parsed at admission). The token is
  first drawn as usual from the numpy row, then checked against the grammar alone (a one-element
  candidate array); only when the grammar rejects it is the grammar applied to the whole
  vocabulary, the rejected tokens masked to -inf and the draw repeated. Every accepted token
  advances the grammar; an end-of-generation token is allowed only where the grammar is complete.
* **Stops.** End-of-generation tokens, stop strings (searched in the raw bytes of the new tail,
  so a stop string or a multi-byte character split across tokens is found), ``max_tokens``.
  Text is decoded from UTF-8 once, at the end (invalid bytes become U+FFFD).

Prompt reading runs in its own llama_decode calls, not mixed into generation steps: with one KV
stream per sequence llama.cpp splits a batch whose sequences have unequal token counts anyway.

Reproducibility: the same requests, seeds and settings give the same texts in any process. On
quantised models llama.cpp's logits depend slightly on what else sits in the KV cache (float
summation order; on Gemma-3-270M Q4_K_M up to ~1 logit, 0.5-1.6% total variation at T=0.5,
the same size as switching flash attention on), so the prefix cache and the batch composition
can change sampled texts after a while; on the f32 test models, with flash attention off, they
change nothing.

Left out: speculative decoding, lazy grammars, logprobs, per-request LoRA, recurrent models (their
state cannot be shared by ``seq_cp`` the same way), multiple generate() calls at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lite_align import native
from lite_align.errors import ConfigError, GenerationError, ModelFileError

# the generation contract's types, used here and re-exported for readers of this module
from lite_align.generation.base import GenerationRequest as GenerationRequest
from lite_align.generation.base import GenerationResult as GenerationResult
from lite_align.generation.base import SamplingParams as SamplingParams
from lite_align.gguf_check import inspect_gguf, sha256_file

# ---------------------------------------------------------------------------------------------
# Memory: how many live sequences fit a budget
# ---------------------------------------------------------------------------------------------

# the fewest live sequences a working-memory cap leaves (tuning's old fixed setting, 1 thread x 16)
FEWEST_CAPPED_SEQUENCES = 16


def estimated_memory(
    sequences: int,
    *,
    model_bytes: int,
    cell_bytes: int,
    n_vocab: int,
    n_ctx: int,
    kv_unified: bool = False,
    window_cell_bytes: int = 0,
    window_cells: int = 0,
) -> int:
    """Bytes a generator holds, estimated: the weights, the KV cells (per-sequence streams: n_ctx
    for each live sequence and 4 spare streams; unified: one cache of n_ctx cells), a float32
    logits row per sequence, the compute buffers (~64 logits rows) and 64 MB of the rest.

    ``cell_bytes`` is a cell's bytes in the layers that attend to the whole context;
    ``window_cell_bytes`` its bytes in sliding-window layers, which keep at most
    ``window_cells`` cells per stream (a unified cache keeps them at full size).

    >>> estimated_memory(16, model_bytes=10**8, cell_bytes=1000, n_vocab=1000, n_ctx=1000) // 10**6
    187
    >>> args = dict(model_bytes=10**8, cell_bytes=200, n_vocab=1000, window_cell_bytes=800)
    >>> estimated_memory(16, n_ctx=1000, window_cells=256, **args) // 10**6  # windows of 256 cells
    175
    >>> estimated_memory(16, n_ctx=1000, window_cells=2048, **args) // 10**6  # a window above n_ctx
    187
    """
    window = n_ctx if kv_unified else min(n_ctx, window_cells or n_ctx)
    streams = 1 if kv_unified else sequences + 4
    kv = streams * (n_ctx * cell_bytes + window * window_cell_bytes)
    return model_bytes + kv + 4 * n_vocab * (sequences + 64) + 64 * 2**20


# llama.cpp's sliding-window layouts: in these architectures every n-th layer attends to the
# whole context and the others to a window (llama.cpp's swa pattern; facts of its model code)
FULL_ATTENTION_EVERY = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}


def window_layers(architecture: str, n_layer: int) -> int:
    """How many of a model's layers attend to a sliding window in llama.cpp (0: unknown or none;
    the memory estimate then counts every layer at full context, an upper bound).

    >>> window_layers("gemma3", 18), window_layers("gemma2", 26), window_layers("llama", 30)
    (15, 13, 0)
    """
    every = FULL_ATTENTION_EVERY.get(architecture, 0)
    return sum(1 for il in range(n_layer) if il % every < every - 1) if every else 0


def context_cells(n_ctx: int | None, n_ctx_train: int, *, kv_unified: bool = False) -> int:
    """The cells a context of ``n_ctx`` gets (per sequence; unified: in all): llama.cpp pads to
    256; None is the default, the model's training context up to 2,048 (unified: 16,384).

    >>> context_cells(1000, 8192), context_cells(None, 8192), context_cells(None, 1024)
    (1024, 2048, 1024)
    """
    if n_ctx is None:
        default = DEFAULT_CTX_UNIFIED if kv_unified else DEFAULT_CTX_PER_SEQUENCE
        n_ctx = min(n_ctx_train, default) if n_ctx_train > 0 else default
    return -(-n_ctx // 256) * 256


def sequences_within(
    budget: int,
    *,
    model_bytes: int,
    cell_bytes: int,
    n_vocab: int,
    n_ctx: int,
    kv_unified: bool = False,
    working: int | None = None,
    window_cell_bytes: int = 0,
    window_cells: int = 0,
) -> int:
    """The most live sequences whose :func:`estimated_memory` stays within ``budget`` (at least 1,
    at most llama.cpp's 252), and, with ``working``, within the weights plus ``working`` bytes
    unless that would leave fewer than ``FEWEST_CAPPED_SEQUENCES`` (then ``budget`` alone decides up to 16).

    >>> sequences_within(300 * 10**6, model_bytes=10**8, cell_bytes=1000, n_vocab=1000, n_ctx=1000)
    128
    >>> sequences_within(300 * 10**6, model_bytes=10**8, cell_bytes=1000, n_vocab=1000, n_ctx=1000, working=10**8)
    28
    >>> sequences_within(300 * 10**6, model_bytes=10**8, cell_bytes=1000, n_vocab=1000, n_ctx=1000, working=10**7)
    16
    """
    args = {
        "model_bytes": model_bytes, "cell_bytes": cell_bytes, "n_vocab": n_vocab, "n_ctx": n_ctx,
        "window_cell_bytes": window_cell_bytes, "window_cells": window_cells,
    }  # fmt: skip

    def largest(limit: int, hi: int) -> int:
        lo = 1
        if estimated_memory(hi, kv_unified=kv_unified, **args) <= limit:
            return hi
        while lo < hi:  # the largest n that fits
            mid = (lo + hi + 1) // 2
            if estimated_memory(mid, kv_unified=kv_unified, **args) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return lo

    fit = largest(budget, 252)
    if working is None:
        return fit
    return min(fit, max(largest(model_bytes + working, 252), FEWEST_CAPPED_SEQUENCES))


# ---------------------------------------------------------------------------------------------
# Sampling and stop strings: pure functions, tested without a model
# ---------------------------------------------------------------------------------------------


def apply_repetition_penalty(row: np.ndarray, seen: np.ndarray, penalty: float) -> None:
    """HF/TGI repetition penalty, in place: each seen token's logit is divided by ``penalty`` when
    positive, multiplied by it otherwise. ``seen`` holds each token id once.

    >>> row = np.array([2.0, -2.0, 1.0], dtype=np.float32)
    >>> apply_repetition_penalty(row, np.array([0, 1]), 2.0); row.tolist()
    [1.0, -4.0, 1.0]
    """
    if penalty == 1.0 or seen.size == 0:
        return
    values = row[seen]
    row[seen] = np.where(values > 0, values / np.float32(penalty), values * np.float32(penalty))


_BLOCK = 1024  # tokens per block of the two-level inverse-CDF search


def sample_token(
    row: np.ndarray,
    seen: np.ndarray,
    *,
    temperature: float,
    repetition_penalty: float,
    rng: np.random.Generator,
) -> int:
    """Draw the next token from one row of float32 logits (overwritten: used as scratch space).

    Greedy (argmax after the penalty) when temperature is 0. Otherwise the row becomes
    ``exp((logit - max) / T)`` in place, over the full vocabulary (no truncation; a token whose
    weight underflows to 0 in float32 is below 1e-44 of the top token's), and one uniform draw
    ``u`` from ``rng`` picks the token where the cumulative weight first exceeds ``u`` times the
    total, tokens in id order. The search is two-level: block sums of 1024 tokens, then a
    cumulative sum inside one block, so no cumulative sum over the whole vocabulary is needed
    (measured on Gemma-3's 262,144 tokens: ~0.2 ms a row, against ~0.6-0.9 ms with a float64
    cumulative sum and ~2.8 ms with llama.cpp's penalties/temp/dist sampler chain).
    """
    apply_repetition_penalty(row, seen, repetition_penalty)
    if temperature == 0.0:
        return int(np.argmax(row))
    np.subtract(row, row.max(), out=row)
    np.multiply(row, np.float32(1.0 / temperature), out=row)
    np.exp(row, out=row)
    return draw_index(row, rng.random())


def draw_index(weights: np.ndarray, u: float) -> int:
    """Index where the cumulative sum of non-negative ``weights`` first exceeds ``u * total``.

    >>> draw_index(np.array([1.0, 0.0, 3.0], dtype=np.float32), 0.2), draw_index(np.array([1.0, 0.0, 3.0]), 0.3)
    (0, 2)
    """
    n_blocks = weights.size // _BLOCK
    cut = n_blocks * _BLOCK
    sums = np.empty(n_blocks + 1, dtype=np.float64)
    sums[:n_blocks] = weights[:cut].reshape(n_blocks, _BLOCK).sum(axis=1)
    sums[n_blocks] = weights[cut:].sum()
    cumulative = np.cumsum(sums)
    target = u * cumulative[-1]
    block = min(int(np.searchsorted(cumulative, target, side="right")), n_blocks)
    while sums[block] == 0.0:  # float rounding can land on an empty block; step back
        block -= 1
    start = block * _BLOCK
    inside = weights[start : start + _BLOCK]
    before = cumulative[block - 1] if block > 0 else 0.0
    inner = np.cumsum(inside, dtype=np.float64)
    j = min(int(np.searchsorted(inner, target - before, side="right")), inside.size - 1)
    while inside[j] == 0.0:  # the same at the end of a block
        j -= 1
    return start + j


def find_stop(buffer: bytes | bytearray, stops: Sequence[bytes], start: int) -> int:
    """Index of the earliest stop string in ``buffer`` that ends at or after ``start``, or -1.

    Works on UTF-8 bytes, so a stop string split across tokens, or a character whose bytes arrive
    in different tokens, is found once its last byte arrives.

    >>> find_stop(b"an answer``` more", [b"```"], 9)
    9
    """
    best = -1
    for stop in stops:
        i = buffer.find(stop, max(0, start - len(stop) + 1))
        if i != -1 and (best == -1 or i < best):
            best = i
    return best


# ---------------------------------------------------------------------------------------------
# Engine internals
# ---------------------------------------------------------------------------------------------

PREFIX_SLOTS = 2  # distinct shared prefixes kept in the KV cache at once (least recently used goes)
DEFAULT_CTX_PER_SEQUENCE = 2048  # n_ctx when none is given: min(n_ctx_train, this)
DEFAULT_CTX_UNIFIED = 16384  # the same, for one cache shared by all sequences
PREFIX_FILE_VERSION = "lite_align-prefix-v1"

_log_callback: Any = None  # keeps the ctypes callback alive
_log_verbose = False
_log_last_level = 0
_interrupted: KeyboardInterrupt | None = None  # a Ctrl-C (or SIGTERM) caught in the log callback


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt a Ctrl-C caused inside llama.cpp's log callback, if any.

    Called after every llama.cpp call that may log at length (loading, decoding, freeing) and by
    the CLI before it reports success, so a Ctrl-C is never lost, only deferred to a safe point."""
    global _interrupted
    if _interrupted is not None:
        exc, _interrupted = _interrupted, None
        raise exc


_LOG_ERROR, _LOG_CONT = 4, 5  # ggml_log_level in this llama.cpp (NONE, DEBUG, INFO, WARN, ERROR, CONT)


def _import_llama(n_threads: int) -> Any:
    """Import llama_cpp lazily; with more than one thread, keep OpenMP workers from spinning. Warn
    when a GPU build's library loads after numpy (``native``: that order crashed a CUDA build)."""
    if n_threads > 1:
        native.quiet_openmp()
    after_numpy = native.loaded_after_numpy()
    import llama_cpp

    warning = native.late_load_warning(after_numpy, bool(llama_cpp.llama_supports_gpu_offload()))
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
    return llama_cpp


def _install_log_callback(llama: Any, verbose: bool) -> None:
    """Route llama.cpp's log through one callback: everything when verbose, errors otherwise."""
    global _log_callback, _log_verbose
    _log_verbose = verbose
    if _log_callback is None:

        def _log(level: int, text: bytes, _user: Any) -> None:
            global _log_last_level, _interrupted
            try:
                if level != _LOG_CONT:
                    _log_last_level = level
                if _log_verbose or _log_last_level == _LOG_ERROR:
                    sys.stderr.write(text.decode("utf-8", errors="replace"))
            except KeyboardInterrupt as exc:
                # ctypes would print and swallow an exception raised in a C callback, losing the
                # user's Ctrl-C (or SIGTERM): keep it, and raise it again once llama.cpp has returned.
                _interrupted = exc

        _log_callback = llama.llama_log_callback(_log)
        llama.llama_log_set(_log_callback, ctypes.c_void_p(0))


@dataclass
class _Prefix:
    seq_id: int
    n_tokens: int
    last_used: int
    users: int = 0  # unfinished requests whose KV was copied from it (unified: cells still shared)


@dataclass
class _Request:
    request: GenerationRequest
    tokens: list[int]
    shared: int  # leading tokens taken from the prefix cache
    seen: np.ndarray  # distinct prompt token ids
    stops: list[bytes]  # the stop strings, UTF-8
    anchor: int = -1  # sequence holding the prompt's KV cells until every sample has started
    prefix: _Prefix | None = None
    next_sample: int = 0
    unfinished: int = 0
    cells: int = 0  # KV cells reserved for the prompt's own tokens
    sample_cells: int = 0  # KV cells reserved per sample
    logits: np.ndarray | None = None  # after the last prompt token
    seconds: float = 0.0  # prompt reading time, shared among the samples
    grammar: Any = None  # llama_sampler of the parsed grammar, cloned for each sample
    twin_of: _Request | None = None  # a request with the same prompt text, read for both

    @property
    def n_samples(self) -> int:
        return len(self.request.seeds)

    @property
    def remaining(self) -> int:
        return self.n_samples - self.next_sample


@dataclass
class _Sequence:
    req: _Request
    sample_index: int
    seq_id: int
    rng: np.random.Generator
    seen: np.ndarray  # preallocated: distinct ids seen, first n_seen valid
    n_seen: int
    seen_set: set[int]
    pos: int  # position of the token to decode next
    token: int = -1  # last sampled token, decoded in the next step
    n_generated: int = 0
    out: bytearray = field(default_factory=bytearray)
    text_end: int = -1  # where the text ends when a stop string was found
    finish: str = ""
    seconds: float = 0.0
    grammar: Any = None  # this sample's grammar sampler (its state follows the accepted tokens)


@dataclass
class TraceOp:
    """One recorded operation on the llama.cpp context (for the benchmark's raw-limit replay)."""

    kind: str  # "decode" | "cp" | "rm"
    tokens: np.ndarray | None = None
    pos: np.ndarray | None = None
    seq: np.ndarray | None = None
    logits: np.ndarray | None = None
    args: tuple[int, ...] = ()


class LlamaCppGenerator:
    """A GGUF model loaded in-process, generating many samples of many prompts at once."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int = 1,
        n_gpu_layers: int = 0,
        max_sequences: int = 16,
        max_batch_tokens: int = 512,
        prefix_cache_dir: Path | None = None,
        verbose: bool = False,
        kv_unified: bool = False,
        memory_budget: int | None = None,
        memory_working: int | None = None,
        flash_attn: bool | None = None,
    ) -> None:
        """Load a GGUF model (checked by ``inspect_gguf`` first) and create a llama.cpp context.

        ``n_ctx`` is the context of one sequence: its prompt plus its generated tokens (default:
        the model's training context, at most 2048; pass the longest prompt + max_tokens, and
        use ``check`` to test a request). With ``kv_unified=False`` (the default) every sequence
        gets its own KV stream of ``n_ctx`` cells: a sequence's attention reads only its own
        cells, a forked prompt is copied (a memcpy), and KV memory is ``n_ctx`` x
        (``max_sequences`` + 4) x the model's bytes per token. With ``kv_unified=True`` all
        sequences share one cache of ``n_ctx`` cells (default at most 16384): forks are free,
        but every token's attention spans the whole used cache. Measured on Gemma-3-270M, 1
        thread, 16 sequences, in-context prompts of ~1,100 tokens: unified is faster for short
        answers (118 vs 106 tokens/s at 128 tokens) and slower for long ones (84 vs 105 at
        700).

        ``memory_budget`` (bytes): lower ``max_sequences`` until the estimated memory of model,
        KV cache and logits fits (``sequences_within``; never below 1), and with
        ``memory_working`` (bytes) until what is beyond the weights fits that too, but not below
        16 sequences for it. The number asked for stays in ``requested_sequences``.

        ``flash_attn``: None (default) uses llama.cpp's flash attention wherever it supports it
        (faster here on CPU too, see below); False turns it off. Its tiled kernel sums in an order
        that depends on how many tokens a micro-batch holds, so only with it off are the texts of
        an f32 model independent of prefix sharing and batch composition (the engine's tests).
        """
        if max_sequences < 1:
            raise ConfigError(f"max_sequences must be >= 1, got {max_sequences}")
        if max_batch_tokens < max_sequences:
            raise ConfigError(f"max_batch_tokens ({max_batch_tokens}) must be >= max_sequences ({max_sequences})")
        if n_threads < 1:
            raise ConfigError(f"n_threads must be >= 1, got {n_threads}")
        self.model_path = Path(model_path)
        self.info = inspect_gguf(self.model_path)  # before llama.cpp sees the file
        self.max_sequences = max_sequences
        self.max_batch_tokens = max_batch_tokens
        self.prefix_cache_dir = Path(prefix_cache_dir) if prefix_cache_dir is not None else None
        self._llama = llama = _import_llama(n_threads)
        _install_log_callback(llama, verbose)
        llama.llama_backend_init()
        self._model = self._ctx = None
        self._batch: Any = None

        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        model = llama.llama_model_load_from_file(str(self.model_path).encode(), model_params)
        if model:
            self._model = model
        raise_if_interrupted()
        if not model:
            raise ModelFileError(
                f"llama.cpp could not load {self.model_path}; check that its architecture "
                f"({self.info.architecture}) is supported by llama-cpp-python, or re-download it"
            )
        self._model = model
        self._vocab = llama.llama_model_get_vocab(model)
        self.n_vocab: int = llama.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train: int = llama.llama_model_n_ctx_train(model)
        self._n_prefix_slots = PREFIX_SLOTS
        self.kv_unified = kv_unified
        if n_ctx is not None and n_ctx < 16:
            raise ConfigError(f"n_ctx must be at least 16, got {n_ctx}")
        n_ctx = context_cells(n_ctx, self.n_ctx_train, kv_unified=kv_unified)
        self.requested_sequences = max_sequences
        if memory_budget is not None:
            fit = sequences_within(
                memory_budget,
                model_bytes=self.info.size,
                n_vocab=self.n_vocab,
                n_ctx=n_ctx,
                kv_unified=kv_unified,
                working=memory_working,
                **self.kv_layout(),
            )
            max_sequences = self.max_sequences = min(max_sequences, fit)
        # +1: an anchor waiting for a slot; +1 more with per-sequence streams: a spare id that
        # lets _compact move an anchor out of the way.
        n_seq_max = self._n_prefix_slots + max_sequences + (1 if kv_unified else 2)
        if n_seq_max > llama.llama_max_parallel_sequences():
            self.close()
            raise ConfigError(
                f"max_sequences={max_sequences} is above llama.cpp's limit of "
                f"{llama.llama_max_parallel_sequences() - self._n_prefix_slots - 1}"
            )
        self._sequence_capacity = max_sequences
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers

        ctx_params = llama.llama_context_default_params()
        ctx_params.n_ctx = n_ctx if kv_unified else n_ctx * n_seq_max
        ctx_params.n_batch = max_batch_tokens
        ctx_params.n_ubatch = max_batch_tokens
        ctx_params.n_seq_max = n_seq_max
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.kv_unified = kv_unified
        # Per-sequence streams: sliding-window layers keep only their window. A unified cache
        # cannot reuse a window cell that several sequences share (a copied prompt), so its
        # sliding-window part can run out of cells; there it is kept full size.
        ctx_params.swa_full = kv_unified
        # Flash attention where llama.cpp supports it, on CPU too: it skips the masked cells of a
        # stream (outside a sliding window, past a shorter sequence's end). Measured on 2 vCPUs,
        # decode tokens/s off -> on: Gemma-3-270M, 34 sequences, in-context prompts of ~1.5k
        # tokens 115 -> 135; zero-shot, 40 sequences 186 -> 203; 1 thread x 16 sequences 99 ->
        # 107; SmolLM2-135M, 51 chat answers 172 -> 204.
        ctx_params.flash_attn_type = (
            llama.LLAMA_FLASH_ATTN_TYPE_DISABLED if flash_attn is False else llama.LLAMA_FLASH_ATTN_TYPE_AUTO
        )
        ctx_params.no_perf = True
        ctx = llama.llama_init_from_model(model, ctx_params)
        if ctx:
            self._ctx = ctx
        raise_if_interrupted()
        if not ctx:
            self.close()
            raise GenerationError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {self.model_path}; "
                "lower n_ctx or max_sequences"
            )
        self._ctx = ctx
        self._mem = llama.llama_get_memory(ctx)
        self.n_ctx: int = llama.llama_n_ctx_seq(ctx)  # per sequence
        # KV cells all sequences draw from: one shared cache, or a stream per sequence.
        self._cell_capacity = llama.llama_n_ctx(ctx) if kv_unified else sys.maxsize
        # Positions beyond the training context are not used; a sequence stops there.
        self.max_positions = min(self.n_ctx, self.n_ctx_train) if self.n_ctx_train > 0 else self.n_ctx

        self._batch_cap = max_batch_tokens
        self._batch = llama.llama_batch_init(self._batch_cap, 0, 1)
        self._b_token = np.ctypeslib.as_array(self._batch.token, shape=(self._batch_cap,))
        self._b_pos = np.ctypeslib.as_array(self._batch.pos, shape=(self._batch_cap,))
        self._b_nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(self._batch_cap,))
        self._b_logits = np.ctypeslib.as_array(self._batch.logits, shape=(self._batch_cap,))
        self._b_nseq[:] = 1
        self._b_seq_ptrs = [self._batch.seq_id[i] for i in range(self._batch_cap)]

        self._bos: int = llama.llama_vocab_bos(self._vocab)
        self._eog: dict[int, bool] = {}
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

        self._free_ids = set(range(self._n_prefix_slots, n_seq_max))
        self._prefixes: dict[bytes, _Prefix] = {}
        self._clock = 0
        self._reserved_cells = 0
        self._busy = False
        self._timings = {"prompt": 0.0, "decode": 0.0, "sample": 0.0, "bookkeeping": 0.0}
        self._model_sha: str | None = None
        self._candidates: tuple[np.ndarray, Any, np.ndarray, Any] | None = None  # see _grammar_arrays
        self.trace: list[TraceOp] | None = None  # set to [] to record (benchmark)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        llama = getattr(self, "_llama", None)
        if llama is None:
            return
        if self._batch is not None:
            llama.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None
        raise_if_interrupted()

    def __enter__(self) -> LlamaCppGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to free safely
            pass

    # -- machine settings ------------------------------------------------------------------------

    def set_parallelism(self, *, n_threads: int | None = None, max_sequences: int | None = None) -> None:
        """Between generate() calls: change llama.cpp's threads (prompt reading and decoding), or
        the number of live sequences, up to the number the context was made for. Calibration
        uses this to try several settings on one loaded model."""
        if self._busy:
            raise RuntimeError("set_parallelism() during generate()")
        if n_threads is not None:
            if n_threads < 1:
                raise ConfigError(f"n_threads must be >= 1, got {n_threads}")
            self._llama.llama_set_n_threads(self._ctx, n_threads, n_threads)
            self.n_threads = n_threads
        if max_sequences is not None:
            if not 1 <= max_sequences <= self._sequence_capacity:
                raise ConfigError(
                    f"max_sequences must be between 1 and {self._sequence_capacity} "
                    f"(the context's), got {max_sequences}"
                )
            self.max_sequences = max_sequences

    def kv_layout(self) -> dict[str, int]:
        """Bytes of KV cache one token takes in one sequence, f16 keys and values: ``cell_bytes``
        in the layers that attend to the whole context, ``window_cell_bytes`` in sliding-window
        layers, which keep ``window_cells`` cells per sequence stream (llama.cpp: the window plus
        a micro-batch, padded to 256). Measured on Gemma-3-270M (15 of 18 layers slide over 512
        tokens) at a 3,072-cell context: 880 and 1,297 MB peak with 16 and 32 sequences, where
        counting every layer at full context gave 1,465 and 2,345 MB."""
        llama, model = self._llama, self._model
        n_layer = llama.llama_model_n_layer(model)
        n_head = max(1, llama.llama_model_n_head(model))
        n_head_kv = llama.llama_model_n_head_kv(model) or n_head
        key = self._meta_int(f"{self.info.architecture}.attention.key_length")
        key = key or llama.llama_model_n_embd(model) // n_head
        value = self._meta_int(f"{self.info.architecture}.attention.value_length") or key
        layer_cell = n_head_kv * (key + value) * 2
        n_swa = llama.llama_model_n_swa(model)
        sliding = window_layers(self.info.architecture, n_layer) if n_swa > 0 else 0
        return {
            "cell_bytes": int((n_layer - sliding) * layer_cell),
            "window_cell_bytes": int(sliding * layer_cell),
            "window_cells": context_cells(n_swa + self.max_batch_tokens, 0) if sliding else 0,
        }

    def _meta_int(self, key: str) -> int:
        buf = ctypes.create_string_buffer(64)
        if self._llama.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf)) < 0:
            return 0
        try:
            return int(buf.value.decode())
        except ValueError:
            return 0

    # -- vocabulary ----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text``, special tokens parsed. With ``add_bos`` the model's BOS is added
        when the model wants one, but never twice when ``text`` already starts with it."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self._llama.llama_token * cap)()
        n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        if n < 0:
            cap = -n
            buf = (self._llama.llama_token * cap)()
            n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        tokens = list(buf[:n])
        if add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == self._bos:
            del tokens[0]
        return tokens

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes a token adds to the text (control tokens add nothing)."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens (no leading-space stripping, control tokens dropped)."""
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        flag = self._eog.get(token)
        if flag is None:
            flag = self._eog[token] = bool(self._llama.llama_vocab_is_eog(self._vocab, token))
        return flag

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = self._llama.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    # -- chat ----------------------------------------------------------------------------------

    def chat_template(self) -> str | None:
        """The jinja chat template stored in the GGUF (tokenizer.chat_template), or None."""
        key = b"tokenizer.chat_template"
        n = self._llama.llama_model_meta_val_str(self._model, key, None, 0)
        if n < 0:
            return None
        buf = ctypes.create_string_buffer(n + 1)
        self._llama.llama_model_meta_val_str(self._model, key, buf, n + 1)
        return buf.value.decode("utf-8", errors="replace") or None

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render ``messages`` with the model's own chat template (sandboxed jinja2)."""
        template = self.chat_template()
        if template is None:
            raise GenerationError(
                f"{self.model_path} has no chat template (tokenizer.chat_template); "
                "use a base-model prompt format or give the model a template in models.toml"
            )
        return render_template(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self._special_text(self._bos),
            eos_token=self._special_text(self._llama.llama_vocab_eos(self._vocab)),
        )

    # -- measurements ----------------------------------------------------------------------------

    @property
    def timings(self) -> dict[str, float]:
        """Cumulative seconds: prompt (reading prompts and prefixes), decode (generated tokens),
        sample (penalty + softmax draw), bookkeeping (batch building, stop checks, KV frees)."""
        return dict(self._timings)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[GenerationResult]:
        """Yield every sample of every request as soon as it finishes (not in request order)."""
        if self._busy:
            raise RuntimeError("generate() is already running on this generator")
        self._busy = True
        pending = iter(requests)
        waiting: deque[_Request] = deque()  # prompt read, samples left to start
        live: list[_Sequence] = []
        done: list[GenerationResult] = []
        lookahead: list[GenerationRequest] = []
        try:
            while True:
                self._fill(pending, lookahead, waiting, live, done)
                yield from done
                done.clear()
                if not live:
                    if waiting or lookahead:
                        raise GenerationError(  # the budget checks make this unreachable
                            "generation stalled: no KV cells free; raise n_ctx or lower max_sequences"
                        )
                    break
                self._step(live, waiting, done)
                yield from done
                done.clear()
        finally:
            self._abandon(waiting, live)
            self._busy = False

    def _abandon(self, waiting: deque[_Request], live: list[_Sequence]) -> None:
        """Free every non-prefix sequence (after an error or when the caller stops early)."""
        ids = {s.seq_id for s in live} | {r.anchor for r in waiting if r.anchor >= 0}
        for seq in live:
            self._free_grammar(seq)
        for req in waiting:
            self._free_grammar(req)
        for seq_id in ids:
            self._seq_rm(seq_id)
            self._free_ids.add(seq_id)
        self._reserved_cells = sum(p.n_tokens for p in self._prefixes.values())
        for prefix in self._prefixes.values():
            prefix.users = 0

    # -- admission -----------------------------------------------------------------------------

    def _fill(
        self,
        pending: Iterator[GenerationRequest],
        lookahead: list[GenerationRequest],
        waiting: deque[_Request],
        live: list[_Sequence],
        done: list[GenerationResult],
    ) -> None:
        """Start samples of requests whose prompts are read; admit and read new prompts."""
        while True:
            self._spawn(waiting, live, done)
            if len(live) >= self.max_sequences:
                return
            admitted: list[_Request] = []
            unstarted = sum(r.remaining for r in waiting)
            while self._free_ids:
                if not lookahead:
                    nxt = next(pending, None)
                    if nxt is None:
                        break
                    lookahead.append(nxt)
                # enough samples are ready to start; only a twin (nothing to read) still comes in
                full = unstarted >= self.max_sequences - len(live)
                if full and self._twin(lookahead[0].prompt, (*waiting, *admitted)) is None:
                    break
                req = self._admit(
                    lookahead[0],
                    nothing_running=not (live or waiting or admitted),
                    reading=(*waiting, *admitted),
                )
                if req is None:
                    break
                lookahead.pop(0)
                admitted.append(req)
                unstarted += req.n_samples
            if not admitted:
                return
            waiting.extend(admitted)  # before reading: an error then still frees their anchors
            self._read_prompts(admitted)

    def check(self, request: GenerationRequest) -> list[int]:
        """The prompt's tokens, or the GenerationError that generate() would raise for it
        (no seeds, negative seed, prefix not a prefix, empty prompt, prompt too long)."""
        if not request.seeds:
            raise GenerationError(f"request {request.key!r} has no seeds; give one seed per sample")
        if any(seed < 0 for seed in request.seeds):
            raise GenerationError(f"request {request.key!r} has a negative seed; seeds must be >= 0")
        if request.prefix and not request.prompt.startswith(request.prefix):
            raise GenerationError(f"request {request.key!r}: its prefix is not the start of its prompt")
        tokens = self.tokenize(request.prompt)
        if not tokens:
            raise GenerationError(f"request {request.key!r} has an empty prompt")
        if len(tokens) >= self.max_positions:
            raise GenerationError(
                f"request {request.key!r}: the prompt has {len(tokens)} tokens, the context holds "
                f"{self.max_positions}; shorten the prompt (fewer examples) or give a larger context (n_ctx, --ctx)"
            )
        if request.params.grammar is not None:
            self._llama.llama_sampler_free(self._parse_grammar(request))
        return tokens

    # -- grammars ------------------------------------------------------------------------------

    def _parse_grammar(self, request: GenerationRequest) -> Any:
        """A llama.cpp grammar sampler for the request's GBNF (root rule "root"); the caller frees it."""
        grammar = request.params.grammar or ""
        sampler = self._llama.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise GenerationError(
                f"request {request.key!r}: its grammar does not parse as GBNF with a 'root' rule "
                "(run with verbose=True to see llama.cpp's message); fix the grammar"
            )
        return sampler

    def _free_grammar(self, holder: _Request | _Sequence) -> None:
        if holder.grammar is not None:
            self._llama.llama_sampler_free(holder.grammar)
            holder.grammar = None

    def _grammar_arrays(self) -> tuple[np.ndarray, Any, np.ndarray, Any]:
        """Candidate arrays handed to llama_sampler_apply: the whole vocabulary and one token."""
        if self._candidates is None:
            llama = self._llama
            dtype = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data
            assert dtype.itemsize == ctypes.sizeof(llama.llama_token_data)
            full = np.zeros(self.n_vocab, dtype=dtype)
            one = np.zeros(1, dtype=dtype)
            self._candidates = (
                full,
                llama.llama_token_data_array(data=full.ctypes.data_as(llama.llama_token_data_p), size=self.n_vocab),
                one,
                llama.llama_token_data_array(data=one.ctypes.data_as(llama.llama_token_data_p), size=1),
            )
        return self._candidates

    def _grammar_allows(self, sampler: Any, token: int) -> bool:
        _, _, one, one_array = self._grammar_arrays()
        one["id"][0], one["logit"][0] = token, 0.0
        one_array.size, one_array.selected, one_array.sorted = 1, -1, False
        self._llama.llama_sampler_apply(sampler, ctypes.byref(one_array))
        return bool(np.isfinite(one["logit"][0]))

    def _grammar_mask(self, sampler: Any, row: np.ndarray) -> bool:
        """Set the logits of the tokens the grammar rejects to -inf, in place; False if none is left."""
        full, full_array, _, _ = self._grammar_arrays()
        full["id"] = np.arange(self.n_vocab, dtype=np.int32)
        full["logit"] = row
        full_array.size, full_array.selected, full_array.sorted = self.n_vocab, -1, False
        self._llama.llama_sampler_apply(sampler, ctypes.byref(full_array))
        row[full["id"]] = full["logit"]
        return bool(np.isfinite(row).any())

    def _admit(
        self, request: GenerationRequest, *, nothing_running: bool, reading: Sequence[_Request] = ()
    ) -> _Request | None:
        """Tokenise a request and reserve KV cells for its prompt and its first sample, or None
        when the cells are not free yet. A request whose prompt text equals that of one in
        ``reading`` (waiting or just admitted, its anchor still held) becomes its twin: the
        prompt is read once and copied (a sampled condition and its greedy twin, say)."""
        tokens = self.check(request)
        twin = self._twin(request.prompt, reading)
        shared = 0
        prefix_key = b""
        if request.prefix and twin is None:
            prefix_tokens = self.tokenize(request.prefix)
            shared = _common_prefix_len(tokens, prefix_tokens)
            shared = min(shared, len(tokens) - 1)  # at least one token left to read
            if shared > 1:
                prefix_key = np.asarray(tokens[:shared], dtype=np.int32).tobytes()
            else:
                shared = 0
        sample_cells = min(request.params.max_tokens, self.max_positions - len(tokens))
        prompt_cells = len(tokens) - shared
        new_prefix_cells = shared if shared and prefix_key not in self._prefixes else 0
        if new_prefix_cells and not self._prefix_slot_free():
            if not nothing_running:
                return None  # every cached prefix is in use: wait for one to be released
            self._evict_prefixes(keep=prefix_key)
        need = prompt_cells + sample_cells + new_prefix_cells
        if self._reserved_cells + need > self._cell_capacity:
            if nothing_running:
                self._evict_prefixes(keep=prefix_key)
                new_prefix_cells = shared if shared and prefix_key not in self._prefixes else 0
                need = prompt_cells + sample_cells + new_prefix_cells
            if self._reserved_cells + need > self._cell_capacity:
                if nothing_running:
                    raise GenerationError(
                        f"request {request.key!r} needs {need} KV cells (prompt {len(tokens)} tokens "
                        f"+ {sample_cells} to generate), the cache holds {self._cell_capacity}; "
                        "give a larger context (n_ctx, --ctx)"
                    )
                return None
        req = _Request(
            request=request,
            tokens=tokens,
            shared=shared,
            seen=np.unique(np.asarray(tokens, dtype=np.int64)),
            stops=[s.encode("utf-8") for s in request.params.stop],
            unfinished=len(request.seeds),
            cells=prompt_cells,
            sample_cells=sample_cells,
            twin_of=twin,
        )
        if request.params.grammar is not None:
            req.grammar = self._parse_grammar(request)
        req.anchor = self._take_id(high=True)
        self._reserved_cells += prompt_cells + sample_cells  # the first sample's cells too
        if shared:
            t0 = time.perf_counter()
            req.prefix = self._prefix_for(prefix_key, tokens[:shared])
            req.prefix.users += 1
            self._copy(req.prefix.seq_id, req.anchor)
            req.seconds += time.perf_counter() - t0
        return req

    @staticmethod
    def _twin(prompt: str, reading: Sequence[_Request]) -> _Request | None:
        """A request in ``reading`` with this prompt text whose anchor still holds it."""
        for other in reading:
            if other.anchor >= 0 and other.twin_of is None and other.request.prompt == prompt:
                return other
        return None

    def _prefix_slot_free(self) -> bool:
        return len(self._prefixes) < self._n_prefix_slots or any(p.users == 0 for p in self._prefixes.values())

    def _evict_prefixes(self, keep: bytes) -> None:
        for key in [k for k, p in self._prefixes.items() if k != keep and p.users == 0]:
            self._drop_prefix(key)

    def _drop_prefix(self, key: bytes) -> None:
        prefix = self._prefixes.pop(key)
        self._seq_rm(prefix.seq_id)
        self._reserved_cells -= prefix.n_tokens

    def _prefix_for(self, key: bytes, tokens: list[int]) -> _Prefix:
        """The cached prefix for these tokens, decoding (or loading) it on first use."""
        self._clock += 1
        prefix = self._prefixes.get(key)
        if prefix is not None:
            prefix.last_used = self._clock
            return prefix
        if len(self._prefixes) >= self._n_prefix_slots:  # _admit checked that one is unused
            unused = [k for k, p in self._prefixes.items() if p.users == 0]
            self._drop_prefix(min(unused, key=lambda k: self._prefixes[k].last_used))
        used = {p.seq_id for p in self._prefixes.values()}
        seq_id = next(i for i in range(self._n_prefix_slots) if i not in used)
        t0 = time.perf_counter()
        if not self._load_prefix(seq_id, tokens):
            self._decode_prompts([(seq_id, tokens, 0, False)])
            self._save_prefix(seq_id, tokens)
        self._timings["prompt"] += time.perf_counter() - t0
        prefix = _Prefix(seq_id=seq_id, n_tokens=len(tokens), last_used=self._clock)
        self._prefixes[key] = prefix
        self._reserved_cells += len(tokens)
        return prefix

    def _prefix_file(self, tokens: list[int]) -> Path | None:
        if self.prefix_cache_dir is None:
            return None
        if self._model_sha is None:
            self._model_sha = sha256_file(self.model_path)
        # The key covers everything the saved state depends on: our format, the llama.cpp build,
        # the model file, the context layout and the tokens. A stale file is simply not found.
        layout = f"{PREFIX_FILE_VERSION}|{self._llama.__version__}|{self.kv_unified}|{self._batch_cap}"
        digest = hashlib.sha256(f"{layout}|{self._model_sha}".encode())
        digest.update(np.asarray(tokens, dtype=np.int32).tobytes())
        return self.prefix_cache_dir / f"prefix-{digest.hexdigest()[:32]}.kv"

    def _load_prefix(self, seq_id: int, tokens: list[int]) -> bool:
        path = self._prefix_file(tokens)
        if path is None or not path.is_file():
            return False
        llama = self._llama
        out = (llama.llama_token * (len(tokens) + 1))()
        n_out = ctypes.c_size_t(0)
        ok = llama.llama_state_seq_load_file(
            self._ctx, str(path).encode(), seq_id, out, len(tokens) + 1, ctypes.byref(n_out)
        )
        if ok and n_out.value == len(tokens) and list(out[: n_out.value]) == tokens:
            if self.trace is not None:  # a replay cannot load the file: it decodes the tokens
                self._record_decode(np.asarray(tokens), np.arange(len(tokens)), seq_id)
            return True
        self._seq_rm(seq_id)  # a stale or foreign file: decode instead
        return False

    def _save_prefix(self, seq_id: int, tokens: list[int]) -> None:
        path = self._prefix_file(tokens)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        arr = (self._llama.llama_token * len(tokens))(*tokens)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        if self._llama.llama_state_seq_save_file(self._ctx, str(tmp).encode(), seq_id, arr, len(tokens)):
            tmp.replace(path)
        else:
            tmp.unlink(missing_ok=True)

    # -- prompt reading ------------------------------------------------------------------------

    def _read_prompts(self, reqs: list[_Request]) -> None:
        """Decode the unshared part of each request's prompt into its anchor; keep its logits.
        A twin's anchor is a copy of its twin's, after that is read."""
        twins = [r for r in reqs if r.twin_of is not None]
        reqs = [r for r in reqs if r.twin_of is None]
        t0 = time.perf_counter()
        items = [(r.anchor, r.tokens[r.shared :], r.shared, True) for r in reqs]
        if self.kv_unified:
            rows = self._decode_prompts(items)
        else:  # one sequence per batch: llama.cpp would split unequal runs of several streams
            rows = [self._decode_prompts([item])[0] for item in items]
        elapsed = time.perf_counter() - t0
        self._timings["prompt"] += elapsed
        total = sum(len(r.tokens) - r.shared for r in reqs)
        for req, row in zip(reqs, rows, strict=True):
            req.logits = row
            req.seconds += elapsed * (len(req.tokens) - req.shared) / max(total, 1)
        for req in twins:
            t1 = time.perf_counter()
            source = req.twin_of
            assert source is not None and source.logits is not None and source.anchor >= 0
            self._copy(source.anchor, req.anchor)
            req.logits = source.logits.copy()
            req.twin_of = None  # read: from here on an ordinary request
            req.seconds += time.perf_counter() - t1
            self._timings["prompt"] += time.perf_counter() - t1

    def _decode_prompts(self, items: list[tuple[int, list[int], int, bool]]) -> list[np.ndarray | None]:
        """Decode token runs (seq_id, tokens, first position, want logits of the last token),
        packed into batches of at most max_batch_tokens; returns the wanted logits rows."""
        rows: list[np.ndarray | None] = [None] * len(items)
        flat = [
            (i, seq, tok, start + j, want and j == len(toks) - 1)
            for i, (seq, toks, start, want) in enumerate(items)
            for j, tok in enumerate(toks)
        ]
        for lo in range(0, len(flat), self._batch_cap):
            chunk = flat[lo : lo + self._batch_cap]
            n = len(chunk)
            for b, (_, seq, tok, pos, want) in enumerate(chunk):
                self._b_token[b] = tok
                self._b_pos[b] = pos
                self._b_seq_ptrs[b][0] = seq
                self._b_logits[b] = want
            self._decode(n)
            for b, (i, _, _, _, want) in enumerate(chunk):
                if want:
                    ptr = self._llama.llama_get_logits_ith(self._ctx, b)
                    rows[i] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        return rows

    def _decode(self, n: int) -> None:
        self._batch.n_tokens = n
        if self.trace is not None:
            self.trace.append(
                TraceOp(
                    "decode",
                    self._b_token[:n].copy(),
                    self._b_pos[:n].copy(),
                    np.array([p[0] for p in self._b_seq_ptrs[:n]], dtype=np.int32),
                    self._b_logits[:n].copy(),
                )
            )
        ret = self._llama.llama_decode(self._ctx, self._batch)
        raise_if_interrupted()
        if ret != 0:
            hint = "the KV cache is full: raise n_ctx or lower max_sequences" if ret == 1 else "see the log"
            raise GenerationError(f"llama_decode failed with code {ret} ({hint})")

    def _record_decode(self, tokens: np.ndarray, pos: np.ndarray, seq_id: int) -> None:
        assert self.trace is not None
        for lo in range(0, tokens.size, self._batch_cap):
            t = tokens[lo : lo + self._batch_cap].astype(np.int32)
            self.trace.append(
                TraceOp(
                    "decode",
                    t,
                    pos[lo : lo + self._batch_cap].astype(np.int32),
                    np.full(t.size, seq_id, dtype=np.int32),
                    np.zeros(t.size, dtype=np.int8),
                )
            )

    def _copy(self, src: int, dst: int) -> None:
        if self.trace is not None:
            self.trace.append(TraceOp("cp", args=(src, dst)))
        self._llama.llama_memory_seq_cp(self._mem, src, dst, -1, -1)

    def _seq_rm(self, seq_id: int) -> None:
        if self.trace is not None:
            self.trace.append(TraceOp("rm", args=(seq_id,)))
        self._llama.llama_memory_seq_rm(self._mem, seq_id, -1, -1)

    # -- sampling loop -------------------------------------------------------------------------

    def _spawn(self, waiting: deque[_Request], live: list[_Sequence], done: list[GenerationResult]) -> None:
        """Start samples of waiting requests (oldest first) while slots and KV cells allow."""
        while waiting and len(live) < self.max_sequences:
            req = waiting[0]
            last = req.remaining == 1
            if not last and not self._free_ids:
                return
            first = req.next_sample == 0  # reserved at admission
            if not first and self._reserved_cells + req.sample_cells > self._cell_capacity:
                return
            t0 = time.perf_counter()
            if last and (self.kv_unified or not self._free_ids):
                seq_id, req.anchor = req.anchor, -1  # the last sample takes the anchor itself
            elif last:  # per-sequence streams: move to a low id, keeping the live ids one run
                seq_id, req.anchor = self._move(req.anchor, self._take_id(high=False)), -1
            else:
                seq_id = self._take_id(high=False)
                self._copy(req.anchor, seq_id)
            if last:
                waiting.popleft()
            if not first:
                self._reserved_cells += req.sample_cells
            index = req.next_sample
            req.next_sample += 1
            # a sequence ends at max_positions, so no more than that many tokens can be seen
            seen = np.empty(req.seen.size + min(req.request.params.max_tokens, self.max_positions), dtype=np.int64)
            seen[: req.seen.size] = req.seen
            seq = _Sequence(
                req=req,
                sample_index=index,
                seq_id=seq_id,
                rng=np.random.default_rng(req.request.seeds[index]),
                seen=seen,
                n_seen=req.seen.size,
                seen_set=set(req.seen.tolist()),
                pos=len(req.tokens),
                seconds=req.seconds / req.n_samples,
            )
            if req.grammar is not None:
                seq.grammar = self._llama.llama_sampler_clone(req.grammar)
                if last:
                    self._free_grammar(req)
            assert req.logits is not None
            row = req.logits if last else req.logits.copy()
            t1 = time.perf_counter()
            token = self._sample(seq, row)
            t2 = time.perf_counter()
            self._accept(seq, token)
            if last:
                req.logits = None
            if seq.finish:
                self._finish(seq, done)
            else:
                live.append(seq)
            t3 = time.perf_counter()
            self._timings["sample"] += t2 - t1
            self._timings["bookkeeping"] += (t1 - t0) + (t3 - t2)
            seq.seconds += t3 - t0

    def _sample(self, seq: _Sequence, row: np.ndarray) -> int:
        params = seq.req.request.params
        original = row.copy() if seq.grammar is not None else row  # sample_token overwrites row
        token = sample_token(
            row,
            seq.seen[: seq.n_seen],
            temperature=params.temperature,
            repetition_penalty=params.repetition_penalty,
            rng=seq.rng,
        )
        if seq.grammar is None or self._grammar_allows(seq.grammar, token):
            return token
        if not self._grammar_mask(seq.grammar, original):
            return -1  # the grammar allows nothing (it cannot go on): the sample ends here
        return sample_token(
            original,
            seq.seen[: seq.n_seen],
            temperature=params.temperature,
            repetition_penalty=params.repetition_penalty,
            rng=seq.rng,
        )

    def _accept(self, seq: _Sequence, token: int) -> None:
        """Append a sampled token to a sequence and decide whether it has finished."""
        params = seq.req.request.params
        if token < 0:  # a grammar dead end (see _sample): nothing was sampled
            seq.finish = "stop"
            return
        seq.n_generated += 1
        seq.token = token
        if seq.grammar is not None and not self.is_eog(token):
            self._llama.llama_sampler_accept(seq.grammar, token)
        if token not in seq.seen_set:
            seq.seen_set.add(token)
            seq.seen[seq.n_seen] = token
            seq.n_seen += 1
        if self.is_eog(token):
            seq.finish = "stop"
            return
        if params.stop:
            start = len(seq.out)
            seq.out += self.token_bytes(token)
            hit = find_stop(seq.out, seq.req.stops, start)
            if hit >= 0:
                seq.text_end = hit
                seq.finish = "stop"
                return
        else:
            seq.out += self.token_bytes(token)
        if seq.n_generated >= params.max_tokens or seq.pos >= self.max_positions:
            seq.finish = "length"

    def _take_id(self, *, high: bool) -> int:
        """A free sequence id: samples take the lowest, anchors the highest."""
        seq_id = max(self._free_ids) if high else min(self._free_ids)
        self._free_ids.remove(seq_id)
        return seq_id

    def _compact(self, live: list[_Sequence], waiting: deque[_Request]) -> None:
        """Keep the live sequences on the lowest ids, one consecutive run, in id order.

        With a KV stream per sequence, llama.cpp puts only consecutive sequence ids into one
        micro-batch: a gap (a finished sequence, a waiting anchor) would split every step in two.
        New samples take the lowest free ids and anchors the highest, so gaps are rare; when one
        appears, the out-of-place sequence moves into it (a copy of its stream), after moving an
        anchor out of the way if one sits there.
        """
        live.sort(key=lambda s: s.seq_id)
        if self.kv_unified:
            return
        top = self._n_prefix_slots + len(live)  # live ids should be exactly [n_prefix_slots, top)
        for seq in [s for s in live if s.seq_id >= top]:
            inside = [i for i in self._free_ids if i < top]
            if inside:
                hole = min(inside)
            else:
                blocker = next((r for r in waiting if 0 <= r.anchor < top), None)
                above = [i for i in self._free_ids if i >= top]
                if blocker is None or not above:
                    break  # nothing to gain, or no spare id: this step runs split
                hole, blocker.anchor = blocker.anchor, self._move(blocker.anchor, max(above))
            self._free_ids.remove(hole)
            seq.seq_id = self._move(seq.seq_id, hole)
        live.sort(key=lambda s: s.seq_id)

    def _move(self, src: int, dst: int) -> int:
        """Move a sequence's KV stream from id ``src`` to the free id ``dst``; returns ``dst``."""
        self._free_ids.discard(dst)
        self._copy(src, dst)
        self._seq_rm(src)
        self._free_ids.add(src)
        return dst

    def _step(self, live: list[_Sequence], waiting: deque[_Request], done: list[GenerationResult]) -> None:
        """One decode of every live sequence's last token, then one sampled token for each."""
        t0 = time.perf_counter()
        self._compact(live, waiting)
        n = len(live)
        for b, seq in enumerate(live):
            self._b_token[b] = seq.token
            self._b_pos[b] = seq.pos
            self._b_seq_ptrs[b][0] = seq.seq_id
        self._b_logits[:n] = 1
        t1 = time.perf_counter()
        self._decode(n)
        logits = np.ctypeslib.as_array(self._llama.llama_get_logits(self._ctx), shape=(n, self.n_vocab))
        t2 = time.perf_counter()
        tokens = [self._sample(seq, logits[b]) for b, seq in enumerate(live)]
        t3 = time.perf_counter()
        finished = False
        for seq, token in zip(live, tokens, strict=True):
            seq.pos += 1
            self._accept(seq, token)
            finished = finished or bool(seq.finish)
        share = (time.perf_counter() - t0) / n
        for seq in live:
            seq.seconds += share
        if finished:
            for seq in [s for s in live if s.finish]:
                self._finish(seq, done)
            live[:] = [s for s in live if not s.finish]
        t4 = time.perf_counter()
        self._timings["decode"] += t2 - t1
        self._timings["sample"] += t3 - t2
        self._timings["bookkeeping"] += (t1 - t0) + (t4 - t3)

    def _finish(self, seq: _Sequence, done: list[GenerationResult]) -> None:
        req = seq.req
        self._free_grammar(seq)
        self._seq_rm(seq.seq_id)
        self._free_ids.add(seq.seq_id)
        self._reserved_cells -= req.sample_cells
        req.unfinished -= 1
        if req.unfinished == 0:
            self._reserved_cells -= req.cells
            if req.prefix is not None:
                req.prefix.users -= 1
        raw = seq.out if seq.text_end < 0 else seq.out[: seq.text_end]
        done.append(
            GenerationResult(
                key=req.request.key,
                sample_index=seq.sample_index,
                seed=req.request.seeds[seq.sample_index],
                text=bytes(raw).decode("utf-8", errors="replace"),
                completion_tokens=seq.n_generated,
                prompt_tokens=len(req.tokens),
                finish_reason=seq.finish,
                seconds=seq.seconds,
            )
        )

    # -- benchmark support ---------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached prefix and empty the KV cache (between benchmark runs)."""
        if self._busy:
            raise RuntimeError("clear_cache() during generate()")
        self._llama.llama_memory_clear(self._mem, True)
        self._prefixes.clear()
        self._reserved_cells = 0

    def replay(self, trace: list[TraceOp]) -> float:
        """Run a recorded trace again (same batches, same KV copies and frees), with no sampling
        or bookkeeping; returns the wall seconds. The KV cache is cleared first."""
        self.clear_cache()
        llama, ctx, mem = self._llama, self._ctx, self._mem
        t0 = time.perf_counter()
        for op in trace:
            if op.kind == "decode":
                assert op.tokens is not None and op.pos is not None and op.seq is not None
                assert op.logits is not None
                n = op.tokens.size
                self._b_token[:n] = op.tokens
                self._b_pos[:n] = op.pos
                self._b_logits[:n] = op.logits
                for b in range(n):
                    self._b_seq_ptrs[b][0] = op.seq[b]
                self._batch.n_tokens = n
                if llama.llama_decode(ctx, self._batch) != 0:
                    raise GenerationError("llama_decode failed while replaying a trace")
                if op.logits.any():
                    llama.llama_get_logits(ctx)  # waits for the results, as generation does
            elif op.kind == "cp":
                llama.llama_memory_seq_cp(mem, op.args[0], op.args[1], -1, -1)
            else:
                llama.llama_memory_seq_rm(mem, op.args[0], -1, -1)
        elapsed = time.perf_counter() - t0
        self.clear_cache()
        return elapsed


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def render_template(
    template: str,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool,
    bos_token: str,
    eos_token: str,
) -> str:
    """Render a Hugging Face style chat template in a jinja2 sandbox."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def strftime_now(fmt: str) -> str:
        return time.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise GenerationError(f"the model's chat template failed: {exc}") from None
