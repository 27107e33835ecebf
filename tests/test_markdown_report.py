"""The Markdown and JSON reports: tables pinned against expected text for a fixed results dict."""

from __future__ import annotations

import json
from typing import Any

from lite_align.markdown_report import (
    Figure,
    FigureTable,
    Note,
    diversity_measures,
    explain_blocks,
    manifest_lines,
    render_markdown,
    report_json,
)
from lite_align.report import render_document

MANIFEST: dict[str, Any] = {
    "format": "lite_align.run/1",
    "run_dir": "runs/x",
    "settings": {
        "preset": "quick",
        "samples": 5,
        "max_tokens": 96,
        "temperature": 0.5,
        "repetition_penalty": 1.1,
        "seed": 0,
    },
    "models": {
        "base": {"name": "qwen-base", "family": "qwen", "size": 120_000_000, "sha256": "0123456789abcdef" * 4},
        "chat": {"name": "smol-chat", "family": "smollm", "size": 270_000_000, "sha256": "fedcba9876543210" * 4},
    },
    "prompt_set": {"name": "open", "n_prompts": 8, "sha256": "aa"},
    "timings": {"total_s": 95.4, "generation_s": 90.2, "analysis_s": 3.1},
    "peak_rss_mb": 812.3,
    "packages": {"numpy": "2"},
}
RESULTS: dict[str, Any] = {
    "format": "lite_align.results/1",
    "diversity": {
        "base": {
            "label": "base",
            "jaccard_within": 0.2,
            "length_mean": 40.5,
            "abstain_rate": 0.0,
            "n_prompts": 8,
            "ci": {"jaccard_within": [0.15, 0.25], "length_mean": [30.0, 50.5], "abstain_rate": [0.0, 0.0]},
        },
        "chat": {
            "label": "chat",
            "jaccard_within": 0.45,
            "length_mean": 90.0,
            "abstain_rate": 0.125,
            "n_prompts": 8,
            "ci": {"jaccard_within": [0.4, 0.5], "length_mean": [80.0, 100.0], "abstain_rate": [0.0, 0.25]},
        },
    },
    "recover": {
        "icl|knn": {
            "jaccard": {
                "cross": 0.3,
                "baseline": 0.45,
                "ratio": 0.6667,
                "ratio_ci": [0.5, 0.8],
                "cross_ci": [0.25, 0.35],
                "baseline_ci": [0.4, 0.5],
            },
            "verdict": "partly",
        }
    },
    "finding": "Base is more diverse.",
    "explain": {
        "coverage": {
            "wordbag": {
                "aligned_single": 0.6,
                "base_single": 0.2,
                "ci": {"aligned_single": [0.5, 0.7], "base_single": [0.1, 0.3]},
            }
        },
        "explanation": "Aggregation explains most.",
    },
}

EXPECTED = """\
# lite_align report

- **base**: qwen-base (qwen, 120 MB, sha256 0123456789ab)
- **chat**: smol-chat (smollm, 270 MB, sha256 fedcba987654)
- **note**: Different families (qwen base vs smollm chat): differences mix alignment with family.
- **settings**: preset quick · 8 prompts from open · 5 samples · ≤96 new tokens · T=0.5 · repetition penalty 1.1
- **seeds**: run seed 0; every sample's seed derives from (run seed, prompt, sample)
- **time**: 95 s in all (generation 90 s, analysis 3 s) · peak memory 812 MB

**Finding.** Base is more diverse.

## Diversity

Within-prompt measures, mean over prompts with 95% bootstrap intervals over prompts. word-bag Jaccard within \
prompt: lower = more diverse; length (words): mean words per answer; abstain rate: share of answers.

| condition | prompts | word-bag Jaccard within prompt | length (words) | abstain rate |
|---|---:|---:|---:|---:|
| base | 8 | 0.200 [0.150, 0.250] | 40.5 [30.0, 50.5] | 0.000 [0.000, 0.000] |
| chat | 8 | 0.450 [0.400, 0.500] | 90.0 [80.0, 100.0] | 0.125 [0.000, 0.250] |

## Recoverability (reference: chat, sample 0)

cross = similarity of the condition's answers to the teacher's sample 0; baseline = the teacher's other samples \
to its sample 0; ratio = cross / baseline with a paired 95% bootstrap interval. A ratio of 1 means the condition \
answers as much like the teacher as the teacher's own samples do. Verdict: recovered when the ratio's interval \
reaches 1, partly when the ratio is at least 0.75, on two of the three similarities when all three are computed \
(else on one).

| condition | word-bag Jaccard: cross | word-bag Jaccard: baseline | word-bag Jaccard: ratio | verdict |
|---|---:|---:|---:|---|
| icl\\|knn | 0.300 [0.250, 0.350] | 0.450 [0.400, 0.500] | 0.67 [0.50, 0.80] | partly |

## Explaining the drop

### coverage

| coverage | aligned_single | base_single |
|---|---:|---:|
| wordbag | 0.600 [0.500, 0.700] | 0.200 [0.100, 0.300] |

### explanation

Aggregation explains most.
"""


def test_markdown_is_pinned() -> None:
    assert render_markdown(MANIFEST, RESULTS) == EXPECTED


def test_markdown_through_the_format_switch_is_the_same_document() -> None:
    assert render_document("markdown", MANIFEST, RESULTS) == EXPECTED


def test_json_report_holds_the_manifest_in_brief_and_the_results() -> None:
    doc = json.loads(render_document("json", MANIFEST, RESULTS))
    assert doc["format"] == "lite_align.report/1"
    assert doc["manifest"]["models"]["chat"] == {
        "name": "smol-chat",
        "family": "smollm",
        "size": 270_000_000,
        "sha256": "fedcba9876543210" * 4,
    }
    assert doc["manifest"]["pair_note"].startswith("Different families (qwen base vs smollm chat)")
    assert doc["manifest"]["timings"]["total_s"] == 95.4 and "packages" not in doc["manifest"]
    assert doc["results"] == {k: v for k, v in RESULTS.items() if k != "format"}
    assert report_json(MANIFEST, RESULTS)["manifest"]["seed"] == 0


def test_a_new_numeric_measure_gets_a_column() -> None:
    div = {"base": {"length_mean": 3.0, "novelty": 0.5, "ci": {"novelty": [0.4, 0.6]}, "n_prompts": 4}}
    assert diversity_measures(div) == ["length_mean", "novelty"]
    md = render_markdown({}, {"diversity": div})
    assert "| condition | prompts | length (words) | novelty |" in md
    assert "| base | 4 | 3.0 | 0.500 [0.400, 0.600] |" in md


def test_explain_parts_are_laid_out_generically() -> None:
    stance = {"yes": 0.5, "no": 0.25, "n_prompts": 4, "ci": {"yes": [0.25, 0.75]}, "judge": {"model": "tiny"}}
    blocks = explain_blocks("stance", stance)
    assert blocks == [
        FigureTable(
            title="stance",
            row_label="figure",
            columns=("value",),
            rows=(
                ("yes", (Figure(0.5, (0.25, 0.75)),)),
                ("no", (Figure(0.25),)),
                ("n_prompts", (Figure(4.0, None, 0),)),
            ),
        ),
        Note("stance · judge · model", "tiny"),
    ]
    md = render_markdown({}, {"stance": stance})
    assert "| yes | 0.500 [0.250, 0.750] |" in md and "| n_prompts | 4 |" in md
    assert "*stance · judge · model*: tiny" in md


def test_released_outputs_header() -> None:
    manifest = {
        "kind": "released",
        "source": "/data/outputs",
        "reference": "gpt-3.5-turbo",
        "prompts_source": "",
        "sets": {
            "llama-2-base": {
                "model": "Llama-2-7b",
                "n_prompts": 434,
                "samples": 5,
                "temperature": 0.5,
                "n_failed": 2,
                "failed_reasons": {"validation error": 2},
            }
        },
    }
    assert manifest_lines(manifest) == [
        ("source", "/data/outputs"),
        (
            "llama-2-base",
            "Llama-2-7b · 434 prompts · 5 samples each · T=0.5 · "
            "2 prompts dropped, an output failed (validation error ×2)",
        ),
        ("reference", "gpt-3.5-turbo"),
        ("prompts", "not found (give --prompts FILE)"),
    ]
