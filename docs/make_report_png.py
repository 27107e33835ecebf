"""Regenerate docs/report.png, the README's screenshot: the HTML report of the six sampled sets of the
paper's ConflictingQA release that the reference table covers, rendered from relative paths (a
temporary ConflictingQA/ of links to the release, so no machine path shows), in headless Chromium
driven as tests/test_browser.py drives it.

    .venv/bin/python docs/make_report_png.py      # needs the release (lite-align release fetch) and chromium
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_browser import Chromium  # noqa: E402

from lite_align.compare import load_report_input  # noqa: E402
from lite_align.html_report import render_html  # noqa: E402
from lite_align.release import release_root  # noqa: E402

SETS = (
    "gpt-3.5-turbo",
    "llama-2-base",
    "llama-2-icl-gpt-3.5-knn-prompt_similar",
    "llama-2-icl-gpt-3.5-rand",
    "mistral",
    "mistral-instruct",
)


def main() -> None:
    out = ROOT / "docs" / "report.png"
    release = release_root() / "ConflictingQA"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ConflictingQA" / "outputs").mkdir(parents=True)
        (Path(tmp) / "ConflictingQA" / "instances").symlink_to(release / "instances")
        for name in SETS:
            (Path(tmp) / "ConflictingQA" / "outputs" / name).symlink_to(release / "outputs" / name)
        os.chdir(tmp)  # the report names its sources as given: ConflictingQA/outputs, ...
        inp = load_report_input("ConflictingQA/outputs", reference="gpt-3.5-turbo")
        page = Path(tmp) / "release.html"
        page.write_text(render_html(inp.manifest, inp.results, inp.sets, inp.prompts, teacher=inp.teacher))
        profile = Path(tmp) / "profile"
        profile.mkdir()
        browser = Chromium(profile)
        try:
            browser.open(page)
            browser.screenshot(out, max_height=3400)
        finally:
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
