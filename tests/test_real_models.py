"""End to end on the real embedded default models (Gemma-3-270M base, SmolLM2-135M-Instruct) and
the real ONNX encoder, with a small budget. Installed by ./install.sh; CI runs these."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.real_models


def cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lite_align.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_models_lists_the_embedded_pair_as_present() -> None:
    res = cli("models", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads(res.stdout)["models"]}
    for name in ("gemma-3-270m", "smollm2-135m-instruct"):
        assert rows[name]["present"], name
        assert rows[name]["size"] > 50_000_000 and len(rows[name]["sha256"]) == 64
    assert rows["gemma-3-270m"]["sha256"].startswith("a5fd3b62230a")  # the chunk package's published sha256
    assert not rows["qwen2.5-0.5b"]["present"] and "download" in rows["qwen2.5-0.5b"]["hint"]


def test_small_study_on_the_embedded_pair(tmp_path: Path) -> None:
    res = cli(
        "run",
        "--limit",
        "3",
        "--samples",
        "3",
        "--max-tokens",
        "32",
        "--conditions",
        "base,chat,icl-knn",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    for cond in ("base", "chat", "icl-knn"):
        row = doc["diversity"][cond]
        assert row["n_prompts"] == 3 and row["n_responses"] == 9
        assert 0.0 <= row["jaccard_within"] <= 1.0 and 0.0 <= row["embedding_diversity"] <= 2.0
        assert row["length_mean"] > 0
    knn = doc["recover"]["icl-knn"]
    for sim in ("jaccard", "embedding", "bertscore"):
        assert 0.0 <= knn[sim]["cross"] <= 1.0 and knn[sim]["baseline"] > 0
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples" / "base.jsonl").read_text().splitlines()]
    first = [s["text"] for s in samples if s["prompt_id"] == 0]
    assert len(first) == 3 and len(set(first)) > 1  # the base samples of one prompt differ
    chat = [json.loads(line) for line in (tmp_path / "run" / "samples" / "chat.jsonl").read_text().splitlines()]
    assert all(s["text"] for s in chat)  # the chat template path produced answers
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["models"]["base"]["family"] == "gemma-3" and manifest["models"]["chat"]["family"] == "smollm2"
    assert "different families" in manifest["pair_note"].lower()
    assert manifest["peak_rss_mb"] < 2000


def test_report_says_the_pair_is_of_different_families(tmp_path: Path) -> None:
    res = cli(
        "run",
        "--limit",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "16",
        "--conditions",
        "base,chat",
        "--out",
        str(tmp_path / "run"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    flat = " ".join(res.stdout.split())
    assert "Different families" in flat and "preset quick" in flat and "Finding:" in flat
