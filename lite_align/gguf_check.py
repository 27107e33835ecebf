"""Check a GGUF file before llama.cpp sees it, and hash model files.

llama.cpp aborts the whole process on some corrupt files, so ``inspect_gguf`` reads the header,
the metadata and the tensor table in pure Python and checks that every tensor's data lies inside
the file. It never reads tensor data. A file that passes can still hold garbage weights; what it
catches is the common damage: a wrong file, an interrupted download, a half-assembled model.

Layout read here (GGUF v2/v3, little-endian): ``b"GGUF"``, version (u32), tensor count (u64),
metadata count (u64), the metadata key/value pairs, one info record per tensor (name, dims, type,
offset), padding to ``general.alignment`` (32 by default), then the tensor data, each tensor at
its offset from the start of the data section.

Left out: big-endian files, GGUF v1 (2023, u32 counts), split files (each part is checked alone).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from lite_align.errors import ModelFileError
from lite_align.jsonio import loads as json_loads

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# Sanity limits: far above any real model, low enough that a random header cannot make us loop
# for minutes or allocate gigabytes.
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_DIMS = 8

# ggml tensor type id -> (elements per block, bytes per block), as ggml defines them.
GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}

# general.file_type (llama_ftype) -> the usual quantisation name.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

# GGUF metadata value types: id -> struct format of one scalar (8 = string, 9 = array).
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

# Metadata whose values we keep; everything else is only skipped over.
_WANTED_SUFFIXES = (".context_length", ".block_count")
_WANTED = {"general.architecture", "general.name", "general.alignment", "general.file_type", "tokenizer.chat_template"}
# The one array whose length is kept: the token list's length is the model's vocabulary size
# (what llama.cpp's n_vocab reports), read without reading the tokens themselves.
_TOKENS = "tokenizer.ggml.tokens"


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    size: int  # bytes on disk
    version: int
    architecture: str
    name: str  # general.name, "" when absent
    context_length: int | None  # <architecture>.context_length
    has_chat_template: bool
    n_tensors: int
    n_metadata: int
    file_type: str | None  # e.g. "Q4_K_M", None when the file does not say
    data_offset: int  # where the tensor data section starts
    block_count: int | None = None  # <architecture>.block_count: the model's layers
    vocab_size: int | None = None  # entries of tokenizer.ggml.tokens, None when the file has no token list


class _Reader:
    """Bounds-checked little-endian reads from a memory map; past the end means truncated."""

    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path
        self.size = len(buf)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelFileError(
                f"{self.path} is truncated: its {what} runs past the end of the file "
                f"({self.size} bytes present); re-download or re-install it"
            )

    def scalar(self, fmt: str, what: str) -> int | float | bool:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value  # type: ignore[no-any-return]

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str) -> bytes:
        n = self.u64(what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw

    def skip_string(self, what: str) -> None:
        n = self.u64(what)
        self.need(n, what)
        self.pos += n


def _not_gguf(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path} is not a GGUF file ({why}); check the path or re-download the model")


def _corrupt(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path} is a corrupted GGUF file ({why}); re-download or re-install it")


def _read_value(r: _Reader, vtype: int, key: str, keep: bool) -> object:
    """Read (keep=True) or skip one metadata value of type ``vtype``. Arrays are always skipped;
    of the token list (an array of strings), ``keep`` returns its length."""
    what = f"metadata value {key!r}"
    if vtype in _SCALARS:
        return r.scalar(_SCALARS[vtype], what)
    if vtype == _STRING:
        if keep:
            return r.string(what).decode("utf-8", errors="replace")
        r.skip_string(what)
        return None
    if vtype == _ARRAY:
        item_type = r.u32(what)
        count = r.u64(what)
        if item_type in _SCALARS:
            r.need(count * struct.calcsize(_SCALARS[item_type]), what)
            r.pos += count * struct.calcsize(_SCALARS[item_type])
            return None
        if item_type == _STRING:
            r.need(count * 8, what)  # every string has at least its length field
            for _ in range(count):
                r.skip_string(what)
            return count if keep and key == _TOKENS else None
        raise _corrupt(r.path, f"metadata {key!r} is an array of unknown type {item_type}")
    raise _corrupt(r.path, f"metadata {key!r} has unknown type {vtype}")


def _tensor_nbytes(type_id: int, dims: list[int]) -> int | None:
    """Bytes of a tensor's data, or None for a type this table does not know."""
    block = GGML_BLOCKS.get(type_id)
    if block is None:
        return None
    n_elements = 1
    for d in dims:
        n_elements *= d
    per_block, block_bytes = block
    return (n_elements // per_block) * block_bytes


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read and validate a GGUF file's header, metadata and tensor table.

    Raises ModelFileError (one line, says what to do) when the file is missing, empty, not GGUF,
    of an unsupported version, corrupted, or truncated.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist; check the path or install the model") from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file; give the path of a .gguf model file")
    if size < 24:
        raise _not_gguf(path, f"only {size} bytes")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _parse(_Reader(buf, path), size)


def _parse(r: _Reader, size: int) -> GGUFInfo:
    path = r.path
    magic = bytes(r.buf[:4])
    if magic != MAGIC:
        raise _not_gguf(path, f"it starts with {magic!r}, not b'GGUF'")
    r.pos = 4
    version = r.u32("header")
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(
            f"{path} uses GGUF version {version}; only versions 2 and 3 are supported, "
            "convert it with a recent llama.cpp"
        )
    n_tensors = r.u64("header")
    n_kv = r.u64("header")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise _corrupt(path, f"header claims {n_tensors} tensors and {n_kv} metadata entries")

    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string("metadata key").decode("utf-8", errors="replace")
        vtype = r.u32(f"metadata {key!r}")
        keep = key in _WANTED or key == _TOKENS or key.endswith(_WANTED_SUFFIXES)
        value = _read_value(r, vtype, key, keep)
        if keep:
            meta[key] = value

    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _corrupt(path, f"general.alignment is {alignment!r}, not a power of two")

    tensors: list[tuple[str, int, int | None]] = []  # name, offset, nbytes
    for _ in range(n_tensors):
        name = r.string("tensor table").decode("utf-8", errors="replace")
        n_dims = r.u32(f"tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _corrupt(path, f"tensor {name!r} has {n_dims} dimensions")
        dims = [r.u64(f"tensor {name!r}") for _ in range(n_dims)]
        type_id = r.u32(f"tensor {name!r}")
        offset = r.u64(f"tensor {name!r}")
        if offset % alignment:
            raise _corrupt(path, f"tensor {name!r} starts at unaligned offset {offset}")
        block = GGML_BLOCKS.get(type_id)
        if block is not None and dims[0] % block[0]:
            raise _corrupt(path, f"tensor {name!r} has {dims[0]} columns, not a multiple of {block[0]}")
        tensors.append((name, offset, _tensor_nbytes(type_id, dims)))

    data_offset = -(-r.pos // alignment) * alignment
    expected, last = data_offset, "(padding after the tensor table)"
    for name, offset, nbytes in tensors:
        end = data_offset + offset + (nbytes or 0)
        if nbytes is None and data_offset + offset >= size:
            end = data_offset + offset + 1  # unknown type: its first byte must at least exist
        if end > expected:
            expected, last = end, f"tensor {name!r}"
    if n_tensors and expected > size:
        raise ModelFileError(
            f"{path} is truncated: {expected} bytes expected ({last} ends there), "
            f"{size} present; re-download or re-install it"
        )

    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _corrupt(path, "general.architecture is missing")
    ctx_len = meta.get(f"{arch}.context_length")
    blocks = meta.get(f"{arch}.block_count")
    file_type = meta.get("general.file_type")
    template = meta.get("tokenizer.chat_template")
    name_value = meta.get("general.name")
    n_tokens = meta.get(_TOKENS)
    return GGUFInfo(
        path=path,
        size=size,
        version=version,
        architecture=arch,
        name=name_value if isinstance(name_value, str) else "",
        context_length=int(ctx_len) if isinstance(ctx_len, int) else None,
        has_chat_template=isinstance(template, str) and bool(template.strip()),
        n_tensors=n_tensors,
        n_metadata=n_kv,
        file_type=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else None,
        data_offset=data_offset,
        block_count=int(blocks) if isinstance(blocks, int) else None,
        vocab_size=n_tokens if isinstance(n_tokens, int) and n_tokens > 0 else None,
    )


def gguf_vocab_size(path: str | Path) -> int | None:
    """The vocabulary size of the model in a GGUF file (its token list's length), from the header
    alone: the weights are neither loaded nor read (0.15 s for Gemma-3's 262,144 tokens). None when
    the file holds no token list; a file that is not a sound GGUF raises ModelFileError as
    ``inspect_gguf`` does."""
    return inspect_gguf(path).vocab_size


def default_hash_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lite_align" / "sha256.json"


def sha256_file(path: str | Path, *, chunk: int = 1 << 20, cache: Path | None = None) -> str:
    """Hex SHA-256 of a file's bytes.

    Results are kept in a small JSON sidecar (``cache``, default ``~/.cache/lite_align/sha256.json``)
    keyed by (absolute path, size, mtime in ns), so a 250 MB model is hashed once, not on every run.
    A cache that cannot be read or written is ignored: the hash is then simply computed.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache = cache if cache is not None else default_hash_cache()
    entries: dict[str, str] = {}
    try:
        loaded = json_loads(cache.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and loaded.get("version") == 1:
            entries = {k: v for k, v in loaded.get("entries", {}).items() if isinstance(v, str)}
    except (OSError, ValueError):
        pass
    if key in entries:
        return entries[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    hexdigest = digest.hexdigest()
    entries = {k: v for k, v in entries.items() if not k.startswith(f"{path}|")}
    entries[key] = hexdigest
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"version": 1, "entries": entries}, indent=0), encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass
    return hexdigest
