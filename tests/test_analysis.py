"""The verdict rule and the finding sentence of analysis.py, on hand-made figures."""

from __future__ import annotations

from lite_align.analysis import finding, verdict


def row(*ratios: tuple[float, float]) -> dict[str, dict[str, object]]:
    names = ("jaccard", "embedding", "bertscore")
    return {n: {"ratio": r, "ratio_ci": [r - 0.1, hi]} for n, (r, hi) in zip(names, ratios, strict=False)}


def test_recovered_needs_the_interval_to_reach_one_on_two_of_three() -> None:
    assert verdict(row((0.9, 1.02), (0.95, 1.1), (0.5, 0.6))) == "recovered"
    assert verdict(row((0.9, 0.99), (0.95, 1.1), (0.5, 0.6))) == "partly"


def test_partly_needs_a_ratio_of_075_on_two_of_three() -> None:
    # the paper's release: in-context llama-2 vs gpt-3.5 is partly, plain llama-2-base is not
    assert verdict(row((0.455, 0.47), (0.918, 0.93), (0.872, 0.89))) == "partly"
    assert verdict(row((0.151, 0.16), (0.464, 0.48), (0.490, 0.50))) == "not"
    assert verdict(row((0.80, 0.9), (0.70, 0.8), (0.74, 0.8))) == "not"


def test_with_only_jaccard_one_similarity_decides() -> None:
    assert verdict(row((0.8, 0.9))) == "partly"
    assert verdict(row((0.9, 1.01))) == "recovered"
    assert verdict(row((0.3, 0.4))) == "not"


def test_finding_names_the_more_diverse_model_per_measure() -> None:
    div = {
        "base": {
            "jaccard_within": 0.10,
            "embedding_diversity": 0.58,
            "distinct_prefix_fraction": 0.9,
            "length_mean": 60,
        },
        "chat": {
            "jaccard_within": 0.40,
            "embedding_diversity": 0.06,
            "distinct_prefix_fraction": 0.95,
            "length_mean": 90,
        },
    }
    text = finding(div)
    assert "base model's samples are more diverse by word-bag Jaccard 0.100 vs 0.400" in text
    assert "chat model's samples are more diverse by distinct prefixes 0.950 vs 0.900" in text
    assert "chat answers average 90 words against 60 for base" in text
    assert finding({"base": div["base"]}) == ""


def test_the_report_header_names_skipped_prompts_and_dropped_examples() -> None:
    import io

    from lite_align import report

    manifest = {
        "settings": {"preset": "quick", "samples": 5, "max_tokens": 96},
        "dropped_examples": {"icl-knn": 4},
        "skipped": [{"condition": "icl-knn", "prompt_id": 7, "reason": "prompt longer than the base model's context"}],
    }
    buf = io.StringIO()
    report.render_header(report.console(120, buf), manifest)
    text = " ".join(buf.getvalue().split())
    assert "examples dropped to fit the base model's context: icl-knn 4" in text
    assert "too long for the model's context: icl-knn prompt 7" in text
