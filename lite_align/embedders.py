"""Sentence embedders beyond the default: list those in models.toml, and export one to ONNX.

    embedder_rows(registry)                       -> one row per [embedders.NAME] (present, size, sha256)
    export_embedder("mpnet", Path("~/st/mpnet"))  -> model.onnx + tokenizer.json + embedder.json, and
                                                     the [embedders.mpnet] entry that loads them

Export turns a sentence-transformers model saved on this machine (a directory with config.json,
tokenizer.json, modules.json and the weights) into what ``embed.OnnxEmbedder`` runs: the
transformer alone, inputs ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when the
model takes them), output ``last_hidden_state`` with dynamic batch and sequence axes. Pooling is
not in the graph: the embedder mean-pools (or takes [CLS]) itself, as the model's Pooling module
says; ``embedder.json`` beside the ONNX file records that and the vector size. The exporter is
torch's TorchScript one (``dynamo=False``): with torch pinned at 2.13.0 it needs no onnxscript,
takes a few seconds for a MiniLM, and writes opset 17, which onnxruntime 1.17 and later run. The
export is checked before it is kept: sentence vectors from onnxruntime must match
sentence-transformers' own ``encode`` (cosine >= 0.999 on a few sentences of different lengths,
so padding is exercised).

Left out: models whose pipeline has modules after pooling other than normalisation (a Dense
projection would be lost), pooling modes other than mean and CLS, quantisation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .embed import SIDECAR, SIDECAR_FORMAT, EmbedderSpec, OnnxEmbedder, exported_settings, file_sha256
from .errors import ConfigError, LiteAlignError, MissingDependencyError, ModelFileError, RegistryError
from .gguf_check import sha256_file
from .loaders import embedder_spec
from .paths import cache_dir
from .registry import load_registry, registry_path

EXPORT_INSTALL = "./install.sh --export (or: pip install torch==2.13.0, then pip install 'lite_align[export]')"
OPSET = 17
CHECK_COSINE = 0.999
CHECK_SENTENCES = (
    "A cat sat on the mat.",
    "Is remote work better for productivity? Studies disagree; the answer depends on the job and the team.",
    "Hi",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen, in the chloroplasts of plant "
    "cells, through the light-dependent reactions and the Calvin cycle.",
)
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------------
# What an export leaves beside its ONNX file


# --------------------------------------------------------------------------------------------------
# Listing


def embedder_rows(registry_path: str | None = None) -> list[dict[str, Any]]:
    """One row per ``[embedders.NAME]``: name, default, present, size (ONNX + tokenizer bytes),
    sha256 of the ONNX file (and whether it matches the entry's), source, and why it is missing."""
    registry = load_registry(registry_path)
    rows = []
    for name, entry in registry.embedders.items():
        if entry.onnx_package:
            source = f"package {entry.onnx_package}/{entry.onnx_file} (tokenizer {entry.tokenizer_package})"
        else:
            source = f"file {entry.onnx_path}"
        row: dict[str, Any] = {
            "name": name,
            "default": name == registry.default_embedder,
            "present": False,
            "size": None,
            "sha256": None,
            "sha256_ok": None,
            "max_length": entry.max_length,
            "source": source,
            "license": entry.license,
            "url": entry.url,
        }
        try:
            spec = embedder_spec(registry, name)
        except LiteAlignError as exc:
            row["problem"] = str(exc)
            rows.append(row)
            continue
        files = [Path(spec.onnx_path), Path(spec.tokenizer_path)]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            row["problem"] = f"missing {', '.join(missing)}"
        else:
            row["present"] = True
            row["size"] = sum(f.stat().st_size for f in files)
            row["sha256"] = sha256_file(files[0])
            row["sha256_ok"] = (row["sha256"] == entry.sha256) if entry.sha256 else None
            row["dim"] = spec.dim
            row["pooling"] = spec.pooling
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True)
class ExportResult:
    name: str
    source: str
    onnx_path: str
    tokenizer_path: str
    dim: int
    pooling: str
    max_length: int
    inputs: tuple[str, ...]
    opset: int
    size: int
    sha256: str
    min_cosine: float  # onnxruntime vs sentence-transformers on CHECK_SENTENCES
    seconds: float
    toml: str
    registered: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d


def default_export_dir(name: str) -> Path:
    """``$LITE_ALIGN_MODELS_DIR`` (its first folder) or ``<cache>/models``, then ``embedders/NAME``."""
    env = os.environ.get("LITE_ALIGN_MODELS_DIR")
    first = next((p for p in (env or "").split(os.pathsep) if p), "")
    root = Path(first).expanduser() if first else cache_dir() / "models"
    return root / "embedders" / name


def _check_source(source: Path) -> None:
    if not source.is_dir():
        raise ConfigError(
            f"--from {source}: not a directory; give the folder a sentence-transformers model was saved to"
        )
    needed = ["config.json", "tokenizer.json", "modules.json"]
    missing = [f for f in needed if not (source / f).is_file()]
    if missing:
        raise ConfigError(
            f"--from {source}: {', '.join(missing)} missing; save the model with sentence-transformers "
            "(model.save(DIR)) so the folder holds its config, fast tokenizer and modules"
        )
    if not any((source / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        raise ConfigError(f"--from {source}: no model.safetensors or pytorch_model.bin; the weights are missing")


def _import_export_stack() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder only: never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError(
            f"exporting an embedder needs {exc.name or 'torch'}, which is not installed; run: {EXPORT_INSTALL}"
        ) from None
    return torch, SentenceTransformer


def _pooling_of(model: Any, source: Path) -> str:
    """'mean' or 'cls', from the model's Pooling module; other pipelines are refused."""
    names = [type(m).__name__ for m in model]
    if not names or names[0] != "Transformer":
        raise ConfigError(f"--from {source}: the first module is {names[:1]}, not a Transformer; cannot export it")
    rest = names[1:]
    extra = [n for n in rest if n not in ("Pooling", "Normalize")]
    if extra or rest.count("Pooling") != 1:
        raise ConfigError(
            f"--from {source}: modules {names}; only Transformer, Pooling and Normalize can be exported "
            "(the embedder pools the encoder's output itself)"
        )
    pooling = model[names.index("Pooling")]
    config = pooling.get_config_dict() if hasattr(pooling, "get_config_dict") else {}
    mode = config.get("pooling_mode")
    if mode is None:  # older sentence-transformers: one flag per mode
        flags = [k.removeprefix("pooling_mode_") for k, v in config.items() if k.startswith("pooling_mode_") and v]
        mode = flags[0] if len(flags) == 1 else "+".join(flags)
    mode = {"mean_tokens": "mean", "cls_token": "cls"}.get(str(mode), str(mode))
    if mode not in ("mean", "cls"):
        raise ConfigError(f"--from {source}: pooling '{mode}' is not supported; lite_align pools by mean or [CLS]")
    return mode


def export_embedder(
    name: str,
    source: str | Path,
    out_dir: str | Path | None = None,
    *,
    max_length: int | None = None,
) -> ExportResult:
    """Export the sentence-transformers model in ``source`` (see the module docstring) to
    ``out_dir`` (default :func:`default_export_dir`): ``model.onnx``, ``tokenizer.json`` and
    ``embedder.json``. The files are written under temporary names and kept only when the
    check passes. Returns what was written and the TOML entry that loads it."""
    if not _NAME.match(name):
        raise ConfigError(f"embedder name '{name}': use letters, digits, '-' and '_' only (it becomes a TOML key)")
    src = Path(source).expanduser().resolve()
    _check_source(src)
    if max_length is not None and max_length < 3:
        raise ConfigError(f"--max-length must be at least 3, got {max_length}")
    torch, sentence_transformer = _import_export_stack()
    t0 = time.perf_counter()
    try:
        model = sentence_transformer(str(src), device="cpu", local_files_only=True)
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, KeyError...)
        raise ModelFileError(f"--from {src}: sentence-transformers could not load it ({exc})") from None
    pooling = _pooling_of(model, src)
    encoder = model[0].auto_model.eval()
    dim = int(encoder.config.hidden_size)
    positions = int(getattr(encoder.config, "max_position_embeddings", 512) or 512)
    length = max_length or int(model.max_seq_length or 256)
    if length > positions:
        raise ConfigError(f"--max-length {length} is above the model's {positions} positions")
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in model.tokenizer.model_input_names:
        inputs.append("token_type_ids")

    dest = Path(out_dir).expanduser() if out_dir else default_export_dir(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create {dest} ({exc.strerror}); choose another folder") from None
    onnx_tmp = dest / "model.onnx.partial"
    _export_graph(torch, encoder, inputs, onnx_tmp)
    tok_tmp = dest / "tokenizer.json.partial"
    shutil.copyfile(src / "tokenizer.json", tok_tmp)
    try:
        min_cos = _check_export(model, onnx_tmp, tok_tmp, name, dim, pooling, length)
    except BaseException:
        onnx_tmp.unlink(missing_ok=True)
        tok_tmp.unlink(missing_ok=True)
        raise
    onnx_path, tok_path = dest / "model.onnx", dest / "tokenizer.json"
    os.replace(onnx_tmp, onnx_path)
    os.replace(tok_tmp, tok_path)

    sha = file_sha256(onnx_path)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "name": name,
        "dim": dim,
        "pooling": pooling,
        "max_length": length,
        "inputs": inputs,
        "output": "last_hidden_state",
        "opset": OPSET,
        "source": str(src),
        "onnx_sha256": sha,
        "check_min_cosine": round(min_cos, 6),
        "exported_with": {d: _version(d) for d in ("torch", "sentence-transformers", "transformers", "onnx")},
    }
    (dest / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return ExportResult(
        name=name,
        source=str(src),
        onnx_path=str(onnx_path),
        tokenizer_path=str(tok_path),
        dim=dim,
        pooling=pooling,
        max_length=length,
        inputs=tuple(inputs),
        opset=OPSET,
        size=onnx_path.stat().st_size,
        sha256=sha,
        min_cosine=min_cos,
        seconds=round(time.perf_counter() - t0, 2),
        toml=toml_entry(name, onnx_path, tok_path, length, sha, note=f"exported from {src}"),
    )


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _export_graph(torch: Any, encoder: Any, inputs: list[str], path: Path) -> None:
    import contextlib
    import io
    import warnings

    class LastHiddenState(torch.nn.Module):  # type: ignore[misc,name-defined]
        """The encoder with positional inputs and one output, as the ONNX graph takes them."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(inputs, args, strict=True))).last_hidden_state

    # Two sequences of different lengths' worth of ids; axes 0 and 1 stay dynamic.
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in inputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*inputs, "last_hidden_state"]}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation notes, not problems of the export
            torch.onnx.export(
                LastHiddenState(encoder),
                example,
                str(path),
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many kinds
        path.unlink(missing_ok=True)
        raise ModelFileError(f"torch could not export the model to ONNX ({type(exc).__name__}: {exc})") from None


def _check_export(model: Any, onnx_path: Path, tok_path: Path, name: str, dim: int, pooling: str, length: int) -> float:
    """Smallest cosine between onnxruntime's sentence vectors (through OnnxEmbedder) and
    sentence-transformers' own; below CHECK_COSINE the export is refused."""
    import numpy as np

    spec = EmbedderSpec(name, onnx_path, tok_path, max_length=length, pooling=pooling, dim=dim)
    texts = list(CHECK_SENTENCES)
    # one padded batch
    with OnnxEmbedder(spec, use_cache=False, batch_size=len(texts), batch_tokens=len(texts) * length) as embedder:
        ours = embedder.embed(texts)
    theirs = np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=len(texts)), dtype=np.float32)
    cos = float(np.min(np.sum(ours * theirs, axis=1)))
    if cos < CHECK_COSINE:
        raise ModelFileError(
            f"the exported {name} disagrees with sentence-transformers (cosine {cos:.4f} < {CHECK_COSINE}); "
            "nothing was kept. Is the model a plain encoder with mean or CLS pooling?"
        )
    return cos


# --------------------------------------------------------------------------------------------------
# models.toml


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_entry(
    name: str, onnx_path: Path, tokenizer_path: Path, max_length: int, sha256: str, *, note: str = ""
) -> str:
    """The ``[embedders.NAME]`` table that loads an exported model."""
    lines = [
        f"[embedders.{name}]",
        f"onnx_path = {_toml_str(str(onnx_path))}",
        f"tokenizer_path = {_toml_str(str(tokenizer_path))}",
        f"max_length = {max_length}",
        f"sha256 = {_toml_str(sha256)}",
    ]
    if note:
        lines.append(f"note = {_toml_str(note)}")
    return "\n".join(lines) + "\n"


def _table_span(lines: list[str], name: str) -> tuple[int, int] | None:
    """Lines [start, end) of the ``[embedders.NAME]`` table, trailing blanks and comments left out
    (they introduce what follows)."""
    header = re.compile(rf'^\s*\[\s*embedders\s*\.\s*(?:{re.escape(name)}|"{re.escape(name)}")\s*\]\s*(#.*)?$')
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def register_embedder(snippet: str, name: str, registry: str | Path | None = None) -> Path:
    """Write ``snippet`` (a ``[embedders.NAME]`` table) into models.toml: it replaces the table
    of that name, or is appended. The new file must load as a registry before it replaces the
    old one."""
    path = registry_path(registry)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read {path} ({exc.strerror}); give --registry") from None
    lines = text.splitlines()
    span = _table_span(lines, name)
    new = snippet.rstrip("\n").splitlines()
    if span is None:
        lines = [*lines, *([""] if lines and lines[-1].strip() else []), *new]
    else:
        lines = [*lines[: span[0]], *new, *lines[span[1] :]]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        load_registry(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise RegistryError(f"cannot write {path} ({exc.strerror}); add the entry by hand") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = [
    "ExportResult",
    "embedder_rows",
    "export_embedder",
    "exported_settings",
    "register_embedder",
    "toml_entry",
]
