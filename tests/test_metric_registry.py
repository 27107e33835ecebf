"""The metric registry: a metric registered from outside the package (here, this test module) is
computed by the analysis and shown by every report, compare and replay, with nothing else edited;
and the typed results read back every golden document exactly as it was written."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_html_report import build_run

from lite_align.bundle import needs_encoder, pack_bundle, replay_bundle
from lite_align.compare import compare_runs, read_run
from lite_align.data import SampleSet
from lite_align.metrics.registry import (
    Family,
    FamilyValues,
    Inputs,
    Metric,
    SimilaritySpec,
    families,
    family_of,
    metric,
    metrics,
    register_family,
    registered,
    similarities,
)
from lite_align.report import console, render_compare, render_document
from lite_align.results import DiversityRow, Results
from lite_align.stats import mean_ci

GOLDEN = Path(__file__).parent / "data" / "golden"
TOY = Metric("toy_vowel_share", "vowel share (toy)", direction=1, digits=4, order=25)


def vowel_share(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
    """Per prompt, the share of its answers' letters that are vowels: a measure anyone can check."""
    per_prompt: dict[int, float] = {}
    for pid, texts in sample_set.by_prompt.items():
        letters = [c for t in texts for c in t.lower() if c.isalpha()]
        if letters:
            per_prompt[pid] = sum(c in "aeiou" for c in letters) / len(letters)
    return FamilyValues({TOY.key: mean_ci(list(per_prompt.values()))}, {TOY.key: per_prompt})


TOY_FAMILY = Family("toy", (TOY,), needs=frozenset({"texts"}), compute=vowel_share)


@pytest.fixture
def toy() -> Iterator[None]:
    with registered(TOY_FAMILY):
        yield


def test_the_builtin_registry() -> None:
    assert [f.name for f in families()][:2] == ["lexical", "embedding"]
    keys = [m.key for m in metrics()]
    assert keys[:3] == ["jaccard_within", "embedding_diversity", "distinct_prefix_fraction"]
    assert [s.key for s in similarities()] == ["jaccard", "embedding", "bertscore"]
    assert [s.key for s in similarities() if s.needs_encoder] == ["embedding", "bertscore"]
    jac = metric("jaccard_within")
    assert jac is not None and jac.direction == -1 and jac.reading == "lower = more diverse"


def test_registering_twice_or_with_unknown_needs_is_refused() -> None:
    with registered(TOY_FAMILY):
        with pytest.raises(ValueError, match="registered already"):
            register_family(Family("toy2", (TOY,), needs=frozenset({"texts"}), compute=vowel_share))
    assert metric(TOY.key) is None  # removed on leaving
    with pytest.raises(ValueError, match="unknown needs"):
        Family("bad", (), needs=frozenset({"telepathy"}), compute=vowel_share)
    with pytest.raises(ValueError, match="direction"):
        Metric("m", "m", direction=2)


def test_a_registered_metric_reaches_every_report_compare_and_replay(toy: None, tmp_path: Path) -> None:
    run_a = build_run(tmp_path, seed=7)
    run_b = build_run(tmp_path, seed=8)
    inp = read_run(run_a)
    sets = inp.sets
    base = inp.results["diversity"]["base"]
    expected = vowel_share(sets["base"], Inputs()).estimates[TOY.key]
    assert base[TOY.key] == pytest.approx(expected.mean) and base["ci"][TOY.key] == [expected.lo, expected.hi]
    # written after the paper's figures and counts: no earlier key moves (the row's agreement
    # table, drawn from every measure, always closes it)
    assert list(base)[-2:] == [TOY.key, "agreement"] and list(base["ci"])[-1] == TOY.key
    assert TOY.key in base["agreement"]["keys"]

    shown = f"{base[TOY.key]:.4f}"
    terminal = render_document("terminal", inp.manifest, inp.results, width=200)
    assert "vowel share (toy) ↑" in terminal and shown in terminal
    markdown = render_document("markdown", inp.manifest, inp.results)
    assert "| vowel share (toy) |" in markdown and shown in markdown
    assert "vowel share (toy): higher = more diverse" in markdown
    html = render_document("html", inp.manifest, inp.results, sets=sets)
    assert "vowel share (toy) per condition" in html and shown in html
    doc = json.loads(render_document("json", inp.manifest, inp.results))
    assert doc["results"]["diversity"]["base"][TOY.key] == pytest.approx(expected.mean)

    compared = compare_runs(inp, read_run(run_b))
    pair = compared["conditions"]["base"]["diversity"][TOY.key]
    assert pair["a"] == pytest.approx(expected.mean) and pair["n"] == len(sets["base"].by_prompt)
    buf = io.StringIO()
    render_compare(console(200, buf), compared)
    assert "vowel share (toy)" in buf.getvalue()

    # replay recomputes it (a lexical replay: the run was analysed without the encoder), and a
    # bundle whose figure was changed is caught at that figure
    packed = pack_bundle([run_a], tmp_path / "a.zip").path
    assert replay_bundle(packed, lexical_only=True).reproduced
    tampered = tmp_path / "tampered"
    tampered_run = build_run(tampered, seed=7)
    results = json.loads((tampered_run / "results.json").read_text())
    results["diversity"]["base"][TOY.key] += 0.5
    (tampered_run / "results.json").write_text(json.dumps(results))
    check = replay_bundle(pack_bundle([tampered_run], tmp_path / "t.zip").path, lexical_only=True).items[0].check
    assert [m["figure"] for m in check.mismatches] == [f"diversity.base.{TOY.key}"]


def test_replay_knows_encoder_figures_by_what_the_registry_says_they_need() -> None:
    """--lexical-only leaves out what needs the encoder, by the registry (not by key names): a
    lexical metric called "embedding..." is still checked, a set named with dots is no path."""

    def fake(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
        return FamilyValues({})

    enc = Family("toy-enc", (Metric("toy_spread", "spread (toy)"),), needs=frozenset({"embeddings"}), compute=fake)
    lex = Family("toy-lex", (Metric("embedding_free_toy", "toy"),), needs=frozenset({"texts"}), compute=fake)
    with registered(enc, lex):
        assert needs_encoder(("diversity", "gpt-3.5-turbo", "toy_spread"))
        assert needs_encoder(("diversity", "gpt-3.5-turbo", "ci", "toy_spread"))
        assert not needs_encoder(("diversity", "gpt-3.5-turbo", "embedding_free_toy"))
    assert not needs_encoder(("diversity", "gpt-3.5-turbo", "toy_spread"))  # unregistered again
    assert needs_encoder(("diversity", "base", "embedding_diversity"))
    assert needs_encoder(("recover", "icl.x", "bertscore")) and needs_encoder(("recover", "icl.x", "verdict"))
    assert not needs_encoder(("recover", "icl.x", "jaccard")) and needs_encoder(("finding",))
    assert needs_encoder(("explain", "raw_diversity", "base", "embedding"))
    assert not needs_encoder(("explain", "raw_diversity", "base", "jaccard"))


def test_a_registered_similarity_is_computed_and_shown(tmp_path: Path) -> None:
    class SameLength:
        name = "toy_length"

        def pairs(self, a: list[str], b: list[str]) -> np.ndarray:
            return np.array([float(len(x.split()) == len(y.split())) for x, y in zip(a, b, strict=True)])

    spec = SimilaritySpec("toy_length", "same length (toy)", make=lambda embedder, shared: SameLength(), order=15)
    with registered(spec):
        run = build_run(tmp_path, seed=7)
        inp = read_run(run)
        row = inp.results["recover"]["base"]
        assert list(row)[:2] == ["jaccard", "toy_length"] and "ratio" in row["toy_length"]
        assert "same length (toy)" in render_document("markdown", inp.manifest, inp.results)
        assert "same length (toy)" in render_document("terminal", inp.manifest, inp.results, width=250)


def _result_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(GOLDEN.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc.get("results"), dict):
            yield path.name, doc["results"]
        elif "diversity" in doc or "recover" in doc:
            yield path.name, doc
        for name, report in (doc.get("reports") or {}).items():
            yield f"{path.name}:{name}", report["results"]


def test_typed_results_read_back_every_golden_document_exactly() -> None:
    seen = 0
    for name, doc in _result_documents():
        typed = Results.from_json(doc)
        assert json.dumps(typed.to_json()) == json.dumps(doc), name
        for row in typed.diversity.values():
            assert isinstance(row, DiversityRow)
        seen += 1
    assert seen >= 10


def test_results_of_a_bundle_read_back_exactly(tmp_path: Path) -> None:
    run = build_run(tmp_path, seed=9)
    packed = pack_bundle([run], tmp_path / "x.zip").path
    with zipfile.ZipFile(packed) as zf:
        name = next(n for n in zf.namelist() if n.endswith("results.json"))
        doc = json.loads(zf.read(name))
    assert json.dumps(Results.from_json(doc).to_json()) == json.dumps(doc)


def test_the_issue_14_measures_are_registered_as_a_text_and_an_encoder_family() -> None:
    """The measures of metrics/measures.py, registered by metrics/field.py: one family computed
    together per sample set from the texts (they share tokens and n-gram tables, the vocabulary
    size an optional input), one that needs the encoder."""
    from lite_align.analysis import diversity_table
    from lite_align.markdown_report import render_markdown
    from lite_align.metrics.measures import EMBEDDING_KEYS, TEXT_KEYS

    text, enc = family_of("vendi_ngram"), family_of("vendi_embedding")
    assert [m.key for m in text.metrics] == [*TEXT_KEYS, "ead_across_prompts"] and not text.needs_encoder
    assert text.optional_needs == {"vocab_size"} and text.available(Inputs())
    assert [m.key for m in enc.metrics] == list(EMBEDDING_KEYS) and enc.needs_encoder
    sets = {
        "base": SampleSet("base", {0: ("A cat sat.", "A dog ran.", "Birds fly."), 1: ("Yes.", "Yes.", "No.")}),
        "chat": SampleSet("chat", {0: ("A cat sat.",) * 3, 1: ("Yes.", "Yes.", "Yes.")}),
    }
    rows = diversity_table(sets, None, vocab_sizes={"chat": 49152})
    assert rows["base"]["distinct_classes"] == 2.5 and rows["chat"]["distinct_classes"] == 1.0
    assert (rows["base"]["ead_vocab_size"], rows["base"]["ead_vocab_size_known"]) == (32000, False)
    assert (rows["chat"]["ead_vocab_size"], rows["chat"]["ead_vocab_size_known"]) == (49152, True)
    markdown = render_markdown({}, {"diversity": rows})
    assert "Distinct answers (ROUGE-1 classes)" in markdown and "Self-BLEU-4: lower = more diverse" in markdown
    assert "EAD's vocabulary size: base 32000 (default: the model is unknown), chat 49152" in markdown
