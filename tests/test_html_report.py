"""The HTML report: self-contained, escaped, a chart per measure, and a sample browser whose marks
are the word bags the Jaccard counts. Also the `lite-align report` command.

``build_run`` makes a real small run directory (the study with fake generators); the browser and
compare tests use it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEmbedder, FakeGenerator
from release import conflictingqa
from typer.testing import CliRunner

from lite_align.analysis import analyse
from lite_align.cli import app
from lite_align.compare import load_report_input
from lite_align.conditions import parse_conditions
from lite_align.data import Prompt, PromptSet, Sample, SampleSet
from lite_align.html_report import ChartRow, bar_chart, browser_data, render_html, shared_spans
from lite_align.markdown_report import measure_label
from lite_align.metrics.lexical import jaccard
from lite_align.metrics.registry import is_embedding_metric, metrics
from lite_align.prompts import PromptTexts
from lite_align.readers import prompt_set_hash, read_samples
from lite_align.store import RunStore
from lite_align.study import ModelRef, Study, StudyPlan, StudySettings, settings_dict
from lite_align.text import word_bag

# the registered measures computed without the sentence encoder
LEXICAL_FIGURES = [m.key for m in metrics() if not is_embedding_metric(m.key)]

PROMPTS = (
    "Are audiobooks real reading?",
    "Is coffee good for you?",
    "Should cities ban cars?",
    'Is <b>remote</b> work better? </script><script>alert("p")</script>',
)
HOSTILE = '<script>alert(1)</script> & <img src=x onerror="alert(2)"> cat'
TEXTS = PromptTexts(system="Be good.", static_queries=("SQ1?", "SQ2?", "SQ3?"), summarize="Sum {query} :: {answer}")


def write_prompts(run: Path, texts: tuple[str, ...] | list[str]) -> None:
    lines = [json.dumps({"messages": [{"role": "user", "content": t}]}) for t in texts]
    (run / "prompts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_run(
    root: Path,
    *,
    seed: int = 7,
    conditions: str = "base,icl-static,base-greedy",
    prompts: tuple[str, ...] = PROMPTS,
    hostile: bool = False,
    with_prompts: bool = True,
    with_results: bool = True,
    name: str | None = None,
) -> Path:
    """A run directory made by the real Study and store, with fake generators, a full manifest,
    prompts.jsonl and results.json (each optional)."""
    run = root / (name or f"run-{seed}")
    pset = PromptSet("t", tuple(Prompt(i, q) for i, q in enumerate(prompts)), "mem", prompt_set_hash(prompts))
    settings = StudySettings(
        preset="quick",
        samples=3,
        max_tokens=8,
        temperature=0.5,
        repetition_penalty=1.1,
        seed=seed,
        k=2,
        conditions=parse_conditions(conditions),
    )
    base = ModelRef("tiny-base", "base", "/b.gguf", "llama")
    chat = ModelRef("tiny-chat", "chat", "/c.gguf", "qwen")
    with RunStore(run, {"seed": seed, "prompts": pset.sha256}) as store:
        Study(
            StudyPlan(settings, pset, TEXTS, base, chat, chat),
            store,
            lambda ref, n_ctx=None: FakeGenerator(ref.name, [], n_ctx),
            embed_prompts=FakeEmbedder().embed,
        ).run()
        store.update_manifest(
            run_dir=str(run),
            lite_align_version="0.1.0",
            settings=settings_dict(settings),
            models={
                "base": {"name": "tiny-base", "family": "llama", "size": 2_000_000, "sha256": "ab" * 32},
                "chat": {"name": "tiny-chat", "family": "qwen", "size": 3_000_000, "sha256": "cd" * 32},
            },
            prompt_set={"name": "t", "source": "mem", "sha256": pset.sha256, "n_prompts": len(pset)},
            timings={"total_s": 12.4, "generation_s": 11.0, "analysis_s": 1.4},
            peak_rss_mb=321.0,
        )
        if hostile:
            store.append(store.samples_path("base"), Sample(0, "base", "tiny-base", 3, 1, HOSTILE, 9, "stop", 0.1))
        if with_prompts:
            write_prompts(run, prompts)
        if with_results:
            sets = {s.label: s for s in read_samples(run)}
            store.write_results(analyse(sets, prompts=dict(enumerate(prompts))))
    return run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("html"), hostile=True)


@pytest.fixture(scope="module")
def page(small_run: Path) -> str:
    inp = load_report_input(small_run)
    return render_html(inp.manifest, inp.results, inp.sets, inp.prompts, teacher=inp.teacher)


def blob(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="sample-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


# --------------------------------------------------------------------------------------------------
# self-contained and safe


def test_page_is_one_self_contained_file(page: str) -> None:
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.I)
    assert not re.search(r"<link[^>]*rel=[\"']?stylesheet", page, re.I)
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)
    assert "default-src 'none'" in page  # the browser itself refuses any fetch
    # a chart per diversity measure with a figure here (no encoder in this run), 1 similarity
    assert page.count("<style>") == 1 and page.count("<svg") == len(LEXICAL_FIGURES) + 1


def test_untrusted_text_is_escaped_and_survives_as_text(page: str) -> None:
    # neither the hostile sample nor the hostile prompt appears as markup anywhere in the page
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>remote" not in page
    # every </script> closes one of the page's own two scripts (the data blob and the browser code)
    assert page.count("</script>") == 2
    data = blob(page)
    assert [t for t, *_ in data["samples"]["base"]["0"]][-1] == HOSTILE
    assert data["prompts"][3] == [3, PROMPTS[3]]
    # the prompt text in the header of the browser is set as text by the script; the select too
    assert "textContent" in page and "innerHTML" not in page


# --------------------------------------------------------------------------------------------------
# charts


def test_every_diversity_measure_has_a_chart_with_intervals(small_run: Path, page: str) -> None:
    results = json.loads((small_run / "results.json").read_text())
    measures = [k for k in results["diversity"]["base"] if k in results["diversity"]["base"]["ci"]]
    assert len(measures) == len(LEXICAL_FIGURES)  # the paper's 7, the field's 12
    for key in measures:
        title = f"{measure_label(key)} per condition, with 95% intervals"
        assert f">{title}</title>" in page, key
    jac = results["diversity"]["base"]
    lo, hi = jac["ci"]["jaccard_within"]
    assert f"base: {jac['jaccard_within']:.3f} (95% interval {lo:.3f} to {hi:.3f})" in page


def test_recovery_charts_have_a_line_at_one_and_the_verdicts(small_run: Path, page: str) -> None:
    results = json.loads((small_run / "results.json").read_text())
    rec = results["recover"]
    assert set(rec) == {"base", "base-greedy", "icl-static"}
    assert page.count('class="ref"') == 1  # one similarity (Jaccard) in a run analysed without embeddings
    for name, row in rec.items():
        assert f"{name} ({row['verdict']}): {row['jaccard']['ratio']:.2f}" in page
        assert f'class="verdict verdict-{row["verdict"]}"' in page


def test_bar_chart_scales_bars_and_whiskers_to_the_axis() -> None:
    svg = bar_chart("c", "T", [ChartRow("a", 0.5, 0.25, 0.75), ChartRow("b", None)], digits=2, reference=1.0)
    rect = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    whisker = re.search(r'<line class="whisker" x1="([\d.]+)" y1="[\d.]+" x2="([\d.]+)"', svg)
    ref = re.search(r'<line class="ref" x1="([\d.]+)"', svg)
    assert rect and whisker and ref
    x0, bar = float(rect[1]), float(rect[2])
    # the axis runs 0..1 (the reference line is at its end): the bar is half of it, the whisker a half
    assert float(ref[1]) - x0 == pytest.approx(2 * bar, abs=0.2)
    assert float(whisker[2]) - float(whisker[1]) == pytest.approx(bar, abs=0.2)
    assert "b: no value" in svg and "a: 0.50 (95% interval 0.25 to 0.75)" in svg


def test_further_parts_show_up_as_charts_and_tables(small_run: Path) -> None:
    inp = load_report_input(small_run)
    results = dict(inp.results)
    results["explain"] = {
        "coverage": {
            "wordbag": {"aligned_single": 0.61, "base_single": 0.22, "ci": {"aligned_single": [0.55, 0.67]}},
            "embedding": {"aligned_single": 0.7, "base_single": 0.4},
        },
        "explanation": "Most of the drop is aggregation.",
    }
    results["stance"] = {"novel_share": 0.25, "n_prompts": 4}
    page = render_html(inp.manifest, results)
    assert '<h2 id="exp-h">Explaining the drop</h2>' in page
    assert "wordbag · aligned_single: 0.610 (95% interval 0.550 to 0.670)" in page
    assert "embedding · base_single: 0.400" in page
    assert "Most of the drop is aggregation." in page
    assert "novel_share: 0.250" in page and "n_prompts: 4" not in page  # counts are tabled, not charted
    assert '<td class="num">4</td>' in page
    assert 'id="sample-data"' not in page  # no sets given: no browser, no script
    assert "<script" not in page


# --------------------------------------------------------------------------------------------------
# the sample browser's marks


def test_marks_are_the_words_shared_with_the_teachers_sample_0() -> None:
    teacher = SampleSet("chat", {0: ("The cat sat on the mat.", "A dog.")})
    base = SampleSet("base", {0: ("A cat and the mat, sat.", "Nothing here")})
    data = browser_data({"chat": teacher, "base": base}, {0: "Cats?"}, "chat")
    text, jac, flat = data["samples"]["base"]["0"][0]
    # bags: {The, cat, sat, mat} and {A, cat, mat, sat} ("A" and "The" are kept: stop words are lower case)
    assert jac == pytest.approx(3 / 5)
    spans, end = [], 0
    for gap, length in zip(flat[::2], flat[1::2], strict=True):
        spans.append(text[end + gap : end + gap + length])
        end += gap + length
    assert spans == ["cat", "mat", "sat"]
    assert data["samples"]["base"]["0"][1][1] == 0.0 and data["samples"]["base"]["0"][1][2] == []
    assert data["samples"]["chat"]["0"][0][1] == 1.0 and data["teacher"] == "chat"


def test_marks_cover_exactly_the_shared_bag_on_the_papers_outputs() -> None:
    ref = read_samples(conflictingqa() / "outputs" / "gpt-3.5-turbo")[0]
    cand = read_samples(conflictingqa() / "outputs" / "llama-2-icl-gpt-3.5-rand")[0]
    checked = 0
    for pid in range(25):
        ref_bag = word_bag(ref.by_prompt[pid][0])
        for text in cand.by_prompt[pid]:
            spans = shared_spans(text, ref_bag)
            marked = {text[a:b] for a, b in spans}
            assert marked == word_bag(text) & ref_bag, (pid, text[:60])
            assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:], strict=False))
            checked += 1
    assert checked == 125


def test_browser_data_jaccard_is_the_metrics_jaccard() -> None:
    ref = read_samples(conflictingqa() / "outputs" / "gpt-3.5-turbo")[0]
    base = read_samples(conflictingqa() / "outputs" / "llama-2-base")[0]
    small = {n: SampleSet(n, {p: s.by_prompt[p] for p in range(5)}) for n, s in (("ref", ref), ("base", base))}
    data = browser_data(small, {}, "ref")
    for pid in range(5):
        for (_, jac, _), text in zip(data["samples"]["base"][str(pid)], base.by_prompt[pid], strict=True):
            assert jac == round(jaccard(word_bag(text), word_bag(ref.by_prompt[pid][0])), 3)


# --------------------------------------------------------------------------------------------------
# the command

runner = CliRunner()


def test_report_command_writes_each_format(small_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(small_run), "--format", "html", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>") and "wrote" in res.stderr
    res = runner.invoke(app, ["report", str(small_run), "--format", "markdown"])
    assert res.exit_code == 0 and res.stdout.startswith("# lite_align report") and "| base |" in res.stdout
    res = runner.invoke(app, ["report", str(small_run), "--json"])
    doc = json.loads(res.stdout)
    assert doc["manifest"]["models"]["base"]["name"] == "tiny-base" and "diversity" in doc["results"]
    res = runner.invoke(app, ["report", str(small_run)])
    assert res.exit_code == 0 and "Recoverability" in res.stdout and "tiny-chat" in res.stdout


def test_report_recomputes_results_when_absent(tmp_path: Path) -> None:
    run = build_run(tmp_path, with_results=False)
    res = runner.invoke(app, ["report", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"]["recover"]["base"]["verdict"] in {"recovered", "partly", "not"}
    assert not (run / "results.json").exists()  # rendering writes nothing into the run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "--format: unknown format 'pdf'; choose one of terminal, html, markdown, json"),
        (["--reference", "x"], "--reference, --prompts and --baseline are for released outputs"),
    ],
)
def test_report_command_bad_options(small_run: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["report", str(small_run), *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_report_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "is neither a lite_align run directory (manifest.json) nor released outputs" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_report_unwritable_out(small_run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", str(small_run), "--format", "html", "--out", str(tmp_path / "no" / "r.html")])
    assert res.exit_code == 2 and "--out: cannot write" in res.stderr


def released_layout(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """The release's layout (outputs/<name>/samples.jsonl beside instances/), by symlinks."""
    outputs = tmp_path / "ConflictingQA" / "outputs"
    outputs.mkdir(parents=True)
    for name in names:
        (outputs / name).symlink_to(conflictingqa() / "outputs" / name)
    (tmp_path / "ConflictingQA" / "instances").symlink_to(conflictingqa() / "instances")
    return outputs


def test_report_of_released_outputs_reproduces_the_reference_values(tmp_path: Path) -> None:
    outputs = released_layout(tmp_path, ("gpt-3.5-turbo", "llama-2-base"))
    res = runner.invoke(app, ["report", str(outputs), "--reference", "gpt-3.5-turbo", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # REFERENCE.md: within-prompt Jaccard 0.4171 / 0.1525; cross 0.0632, baseline 0.4187, ratio 0.151
    assert doc["results"]["diversity"]["gpt-3.5-turbo"]["jaccard_within"] == pytest.approx(0.4171, abs=5e-4)
    assert doc["results"]["diversity"]["llama-2-base"]["jaccard_within"] == pytest.approx(0.1525, abs=5e-4)
    rec = doc["results"]["recover"]["llama-2-base"]["jaccard"]
    assert (rec["cross"], rec["baseline"], rec["ratio"]) == pytest.approx((0.0632, 0.4187, 0.151), abs=6e-4)
    assert doc["manifest"]["prompts_source"].endswith("instances/data.jsonl")
    inp = load_report_input(outputs, reference="gpt-3.5-turbo")
    page = render_html(inp.manifest, inp.results, inp.sets, inp.prompts, teacher=inp.teacher)
    assert blob(page)["prompts"][0] == [0, "Are Audiobooks Considered Real Reading?"]
    assert blob(page)["teacher"] == "gpt-3.5-turbo"


def test_report_of_released_outputs_unknown_reference(tmp_path: Path) -> None:
    outputs = released_layout(tmp_path, ("llama-2-base",))
    res = runner.invoke(app, ["report", str(outputs), "--reference", "gpt-4"])
    assert res.exit_code == 2
    assert "--reference: no set named 'gpt-4'" in res.stderr and "llama-2-base" in res.stderr


def test_report_of_released_greedy_outputs_takes_the_sampled_baseline(tmp_path: Path) -> None:
    greedy = tmp_path / "outputs-temp0"
    greedy.mkdir()
    for name in ("gpt-3.5-turbo", "llama-2-base"):
        (greedy / name).symlink_to(conflictingqa() / "outputs-temp0" / name)
    inp = load_report_input(greedy, reference="gpt-3.5-turbo")
    assert "recover" not in inp.results and "give --baseline" in inp.manifest["note"]
    sampled = str(conflictingqa() / "outputs" / "gpt-3.5-turbo")
    inp = load_report_input(greedy, reference="gpt-3.5-turbo", baseline=sampled)
    # REFERENCE.md, greedy table: llama-2-base cross 0.0354, baseline 0.4187, ratio 0.085
    rec = inp.results["recover"]["llama-2-base"]["jaccard"]
    assert (rec["cross"], rec["baseline"], rec["ratio"]) == pytest.approx((0.0354, 0.4187, 0.085), abs=6e-4)
