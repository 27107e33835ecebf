"""Classroom bundles: a real tiny run packed and replayed (every figure recomputed with no
generation model), released outputs, and every damaged or unsafe archive refused in one line."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from release import conflictingqa
from test_cli import run_cli, tiny_args

from lite_align.bundle import (
    INDEX,
    BundleError,
    compare_figures,
    pack_bundle,
    replay_bundle,
    unsafe_name,
    verify_bundle,
)


@pytest.fixture(scope="module")
def tiny_run_dir(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    res = run_cli(
        *tiny_args(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "2", "--samples", "2", "--max-tokens", "8", "--json")
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def packed(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "class.zip"
    result = pack_bundle([tiny_run_dir], out, with_models=True)
    assert result.runs == ("tiny",) and len(result.models) == 2
    return out


def rewrite(
    src: Path,
    dst: Path,
    change: dict[str, bytes | None],
    extra: dict[str, bytes] | None = None,
    fix_index: bool = False,
) -> None:
    """A copy of a bundle with entries replaced (None: dropped) or added; with ``fix_index`` the
    BUNDLE.json sizes and sha256 are updated to match, as a careful forger would."""
    with zipfile.ZipFile(src) as zin:
        entries = {i.filename: zin.read(i) for i in zin.infolist()}
    entries.update({k: v for k, v in change.items() if v is not None})
    for k, v in change.items():
        if v is None:
            entries.pop(k)
    entries.update(extra or {})
    if fix_index:
        index = json.loads(entries[INDEX])
        for f in index["files"]:
            if f["path"] in entries:
                f["size"] = len(entries[f["path"]])
                f["sha256"] = hashlib.sha256(entries[f["path"]]).hexdigest()
        entries[INDEX] = json.dumps(index).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in entries.items():
            zout.writestr(name, data)


# --- pack and replay ------------------------------------------------------------------------------


def test_bundle_lists_every_file_with_its_checksum(packed: Path, tiny_run_dir: Path) -> None:
    with zipfile.ZipFile(packed) as zf:
        index = json.loads(zf.read(INDEX))
        names = set(zf.namelist())
        assert index["format"] == "lite_align.bundle/1" and index["lite_align_version"] and index["created"]
        listed = {f["path"]: f for f in index["files"]}
        assert names == set(listed) | {INDEX}
        for part in ("manifest.json", "prompts.jsonl", "results.json", "samples/base.jsonl", "aux/summary.jsonl"):
            source = (tiny_run_dir / part).read_bytes()
            assert listed[f"runs/tiny/{part}"]["sha256"] == hashlib.sha256(source).hexdigest()
        assert {"prompts/system.txt", "prompts/static_examples.txt", "prompts/summarize.txt", "models.toml"} <= names
        manifest = json.loads((tiny_run_dir / "manifest.json").read_text())
        for role in ("base", "chat"):  # the models' files, as the run recorded them
            sha = manifest["models"][role]["sha256"]
            model = next(f for f in index["files"] if f["path"].startswith(f"models/{sha[:12]}-"))
            assert model["sha256"] == sha
            assert zf.getinfo(model["path"]).compress_type == zipfile.ZIP_STORED


def test_replay_recomputes_every_figure_with_no_model(packed: Path, tmp_path: Path) -> None:
    seen = {}

    def use(replay: object) -> None:
        seen["files"] = sorted(p.name for p in (tmp_path / "into" / "runs" / "tiny" / "samples").iterdir())

    result = replay_bundle(packed, into=tmp_path / "into", use=use)
    (item,) = result.items
    assert result.reproduced and item.check.mismatches == []
    assert item.check.compared > 200 and item.check.not_recomputed == 0
    assert set(item.results["recover"]) >= {"base", "icl-static", "icl-knn", "icl-summary"}
    assert "base.jsonl" in seen["files"] and (tmp_path / "into" / "models").is_dir()  # kept with --into
    lexical = replay_bundle(packed, lexical_only=True)
    assert lexical.reproduced and lexical.items[0].check.not_recomputed > 0
    assert not lexical.unpacked.exists()  # the temporary folder is removed


def test_replay_cli_formats(packed: Path, tmp_path: Path) -> None:
    res = run_cli("replay", str(packed), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["reproduced"] and doc["items"][0]["check"]["mismatches"] == []
    assert doc["reports"]["tiny"]["results"]["diversity"]["base"]["n_prompts"] == 2
    res = run_cli("replay", str(packed), "--format", "html", "--out", str(tmp_path / "r.html"), "--lexical-only")
    assert res.returncode == 0, res.stderr[-2000:]
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Samples" in page and "reproduced" in res.stderr


def test_a_changed_figure_is_reported_and_exits_1(packed: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(packed) as zf:
        results = json.loads(zf.read("runs/tiny/results.json"))
    results["diversity"]["base"]["length_mean"] += 1.0
    forged = tmp_path / "forged.zip"
    rewrite(packed, forged, {"runs/tiny/results.json": json.dumps(results).encode()}, fix_index=True)
    replay = replay_bundle(forged, lexical_only=True)
    assert [m["figure"] for m in replay.items[0].check.mismatches] == ["diversity.base.length_mean"]
    res = run_cli("replay", str(forged), "--lexical-only")
    assert res.returncode == 1 and "diversity.base.length_mean" in res.stderr


# --- damaged and unsafe archives ---------------------------------------------------------------------


def test_changed_missing_and_unlisted_files_are_refused(packed: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(packed) as zf:
        base = zf.read("runs/tiny/samples/base.jsonl")
    changed = tmp_path / "changed.zip"
    rewrite(packed, changed, {"runs/tiny/samples/base.jsonl": base.replace(b'"seed": ', b'"seed":  ')})
    res = run_cli("replay", str(changed))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "runs/tiny/samples/base.jsonl" in res.stderr
    assert "sha256" in res.stderr
    missing = tmp_path / "missing.zip"
    rewrite(packed, missing, {"runs/tiny/aux/summary.jsonl": None})
    with pytest.raises(BundleError, match="runs/tiny/aux/summary.jsonl is missing"):
        verify_bundle(missing)
    extra = tmp_path / "extra.zip"
    rewrite(packed, extra, {}, extra={"runs/tiny/run.sh": b"rm -rf ~"})
    with pytest.raises(BundleError, match="run.sh, which BUNDLE.json does not list"):
        verify_bundle(extra)
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(BundleError, match="not a lite_align bundle"):
        verify_bundle(not_zip)


def raw_zip(path: Path, name: str, data: bytes = b"x", mode: int = stat.S_IFREG | 0o644) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, data)
        zf.writestr(INDEX, json.dumps({"format": "lite_align.bundle/1", "files": []}))
    return path


@pytest.mark.parametrize(
    ("name", "mode", "why"),
    [
        ("../evil.txt", stat.S_IFREG | 0o644, "climbs out"),
        ("runs/../../evil.txt", stat.S_IFREG | 0o644, "climbs out"),
        ("/etc/cron.d/evil", stat.S_IFREG | 0o644, "absolute"),
        ("C:/evil.txt", stat.S_IFREG | 0o644, "absolute"),
        ("runs\\..\\evil.txt", stat.S_IFREG | 0o644, "backslash"),
        ("runs/link", stat.S_IFLNK | 0o777, "symbolic link"),
        ("runs/dev", stat.S_IFCHR | 0o666, "device file"),
        ("runs/fifo", stat.S_IFIFO | 0o644, "named pipe"),
    ],
)
def test_unsafe_entries_are_refused_before_anything_is_written(tmp_path: Path, name: str, mode: int, why: str) -> None:
    bundle = raw_zip(tmp_path / "b.zip", name, b"/etc/passwd", mode)
    with pytest.raises(BundleError, match=why):
        replay_bundle(bundle, into=tmp_path / "into")
    assert not (tmp_path / "into").exists() and not (tmp_path / "evil.txt").exists()


def test_duplicate_entries_are_refused(packed: Path, tmp_path: Path) -> None:
    dup = tmp_path / "dup.zip"
    shutil.copy(packed, dup)
    with pytest.warns(UserWarning), zipfile.ZipFile(dup, "a") as zf:
        zf.writestr("runs/tiny/results.json", b"{}")
    with pytest.raises(BundleError, match="appears twice"):
        verify_bundle(dup)


def test_unsafe_name_rules() -> None:
    assert unsafe_name("runs/a/samples/base.jsonl") is None
    assert unsafe_name("runs/./a") is not None and unsafe_name("") is not None and unsafe_name("a\x00b") is not None


def test_into_must_be_new_or_empty(packed: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an empty folder"):
        replay_bundle(packed, into=tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


# --- figures ---------------------------------------------------------------------------------------


def test_compare_figures_rules() -> None:
    bundled = {"format": "x", "d": {"a": 0.25, "ci": [0.1, 0.4], "n": 3, "label": "ok", "gone": 1.0, "nan": None}}
    same = {"d": {"a": 0.25 + 1e-9, "ci": [0.1, 0.4], "n": 3, "label": "ok", "nan": float("nan")}}
    check = compare_figures(bundled, same)
    assert check.mismatches == [] and check.compared == 6 and check.not_recomputed == 1
    other = {"d": {"a": 0.26, "ci": [0.1], "n": 3, "label": "no", "gone": 1.0, "nan": 0.0}}
    got = {m["figure"] for m in compare_figures(bundled, other).mismatches}
    assert got == {"d.a", "d.ci", "d.label", "d.nan"}
    skipped = compare_figures(bundled, other, skip=lambda p: p in ("d.a", "d.ci", "d.label", "d.nan"))
    assert skipped.mismatches == [] and skipped.not_recomputed == 5


# --- released outputs ------------------------------------------------------------------------------


@pytest.fixture()
def small_release(tmp_path: Path) -> Path:
    """The first 30 prompts of two released sets, laid out as the release is."""
    root = tmp_path / "CQA"
    for name in ("gpt-3.5-turbo", "llama-2-base"):
        (root / "outputs" / name).mkdir(parents=True)
        lines = (conflictingqa() / "outputs" / name / "samples.jsonl").read_text(encoding="utf-8").splitlines(True)[:30]
        (root / "outputs" / name / "samples.jsonl").write_text("".join(lines), encoding="utf-8")
        shutil.copy(conflictingqa() / "outputs" / name / "args.json", root / "outputs" / name / "args.json")
    (root / "instances").mkdir()
    lines = (conflictingqa() / "instances" / "data.jsonl").read_text(encoding="utf-8").splitlines(True)[:30]
    (root / "instances" / "data.jsonl").write_text("".join(lines), encoding="utf-8")
    return root


def test_released_outputs_pack_as_they_are_and_replay(small_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel.zip"
    res = run_cli("pack", str(small_release / "outputs"), "--reference", "gpt-3.5-turbo", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["released"] == ["outputs"]
    with zipfile.ZipFile(out) as zf:
        packed_samples = zf.read("released/outputs/sets/llama-2-base/samples.jsonl")
        assert "released/outputs/sets/llama-2-base/args.json" in zf.namelist()
        assert "released/outputs/instances/data.jsonl" in zf.namelist()
    assert packed_samples == (small_release / "outputs" / "llama-2-base" / "samples.jsonl").read_bytes()
    replay = replay_bundle(out)
    (item,) = replay.items
    assert replay.reproduced and item.kind == "released" and item.check.compared > 20
    assert item.results["recover"]["llama-2-base"]["jaccard"]["ratio"] < 1  # the analysis, done again
    assert len(item.prompts) == 30


def test_pack_refuses_what_it_cannot_bundle(tmp_path: Path, tiny_run_dir: Path) -> None:
    with pytest.raises(BundleError, match="neither a lite_align run"):
        pack_bundle([tmp_path], tmp_path / "x.zip")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run_dir, unfinished)
    (unfinished / "results.json").unlink()
    res = run_cli("pack", str(unfinished), "--out", str(tmp_path / "x.zip"))
    assert res.returncode == 2 and "has no results.json" in res.stderr and not (tmp_path / "x.zip").exists()


def test_cli_help_mentions_model_size() -> None:
    res = run_cli("pack", "--help", env={"COLUMNS": "200"})
    assert "--with-models" in res.stdout and "large" in res.stdout


def test_explain_parts_are_recomputed_and_judge_parts_left_as_bundled(tiny_run_dir: Path, tmp_path: Path) -> None:
    from lite_align.explain import explain
    from lite_align.readers import read_samples

    run = tmp_path / "explained"
    shutil.copytree(tiny_run_dir, run)
    sets = {s.label: s for s in read_samples(run)}
    part = explain(sets["base"], sets["chat"], embedder=None)
    part["judge"] = {"model": "some-judge", "stats": {"calls": 12}}  # needs a model: not recomputed
    results = json.loads((run / "results.json").read_text())
    results["explain"] = json.loads(json.dumps(part, default=float))
    (run / "results.json").write_text(json.dumps(results))
    pack_bundle([run], tmp_path / "e.zip")
    replay = replay_bundle(tmp_path / "e.zip", lexical_only=True)
    (item,) = replay.items
    assert replay.reproduced and item.results["explain"]["raw_diversity"] == part["raw_diversity"]
    assert any("judge" in n for n in item.notes) and item.check.not_recomputed >= 2
    results["explain"]["raw_diversity"]["base"]["jaccard"]["mean"] = 0.999
    (run / "results.json").write_text(json.dumps(results))
    pack_bundle([run], tmp_path / "f.zip")
    bad = replay_bundle(tmp_path / "f.zip", lexical_only=True).items[0].check.mismatches
    assert [m["figure"] for m in bad] == ["explain.raw_diversity.base.jaccard.mean"]


def test_replay_reproduces_the_field_measures_with_the_recorded_vocabulary(packed: Path, tiny_run_dir: Path) -> None:
    """Issue 14's measures are figures like any other: replay recomputes them, the agreement table
    too, and EAD with the vocabulary size the run read from each model's GGUF (the models need not
    be at hand: the bundled results say it)."""
    bundled = json.loads((tiny_run_dir / "results.json").read_text())
    result = replay_bundle(packed)
    (item,) = result.items
    assert result.reproduced and item.check.mismatches == []
    for cond in ("base", "chat"):
        row, was = item.results["diversity"][cond], bundled["diversity"][cond]
        assert row["ead_vocab_size_known"] is True and row["ead_vocab_size"] == was["ead_vocab_size"]
        for key in ("vendi_ngram", "ead", "self_bleu", "distinct_classes", "vendi_embedding", "semantic_entropy"):
            assert row[key] == pytest.approx(was[key]) and key in row["ci"], (cond, key)
        assert row["agreement"]["keys"] == was["agreement"]["keys"]
    assert bundled["diversity"]["chat"]["ead_vocab_size"] == bundled["diversity"]["base"]["ead_vocab_size"] + 3
