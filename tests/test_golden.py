"""Every `--json` document (and the Markdown and terminal reports beside them) is what it was when
tests/data/golden/ was captured: keys, their order and every figure (see tests/golden.py for what
is produced and what is normalised). This pins the public contract of the JSON documents.

After a change meant to alter a document (an issue asks for it, and the README says so), capture
again with ``LITE_ALIGN_PAPER_RELEASE=... .venv/bin/python tests/golden.py --write`` and commit
the changed files with the change.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

import pytest
from golden import GOLDEN, Doc, Places, documents, produce
from release import release_dir

NAMES = [d.name for d in documents(Places(Path("/work"), Path("/release")))]


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Every document produced once, in order; those needing the release only where it is."""
    try:
        release = release_dir().resolve()
        have_release = True
    except pytest.skip.Exception:
        release, have_release = Path("/nonexistent-release"), False
    places = Places(tmp_path_factory.mktemp("golden").resolve(), release)
    yield {doc.name: text for doc, text in produce(places, only=lambda d: have_release or not d.needs_release)}


def test_every_golden_file_is_a_document() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_document_is_unchanged(name: str, produced: dict[str, str]) -> None:
    doc: Doc = next(d for d in documents(Places(Path("/work"), Path("/release"))) if d.name == name)
    if doc.needs_release and name not in produced:
        release_dir()  # skips (or fails under LITE_ALIGN_REQUIRE_ALL=1) with the reason and the fix
    want = doc.file.read_text(encoding="utf-8")
    got = produced[name]
    if got != want:
        diff = "".join(
            list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden", "now", n=2))[:80]
        )
        pytest.fail(f"{name} differs from tests/data/golden/{name}:\n{diff}", pytrace=False)


def test_the_terminal_report_does_not_depend_on_where_the_release_sits(tmp_path: Path) -> None:
    """A report shows the release's path and pads its panels to fit: the golden harness gives the
    CLI the release by a link of fixed length, so a release elsewhere (as on CI) reads the same."""
    far = tmp_path / ("a-much-longer-folder-name-than-any-release-path-here" * 2) / "paper-release"
    far.parent.mkdir(parents=True)
    far.symlink_to(release_dir().resolve(), target_is_directory=True)
    places = Places(tmp_path / "work", far)
    name = "release-report.txt"
    [(_, got)] = list(produce(places, only=lambda d: d.name == name))
    assert got == (GOLDEN / name).read_text(encoding="utf-8")
