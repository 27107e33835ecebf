"""The library API: what ``lite_align`` exports, ``python -m lite_align``, and the README's library
example, extracted from the README and run as it is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from release import release_dir

import lite_align

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_exports_what_a_notebook_needs() -> None:
    for name in lite_align.__all__:
        assert getattr(lite_align, name) is not None, name
    assert {"analyse", "load_registry", "read_samples", "render", "run_study", "Results"} <= set(lite_align.__all__)
    assert set(lite_align.__all__) <= set(dir(lite_align))


def test_python_dash_m_is_the_command_line() -> None:
    res = subprocess.run([sys.executable, "-m", "lite_align", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "Usage: python -m lite_align" in res.stdout and "diversity" in res.stdout


def test_the_readme_library_example_runs() -> None:
    release = release_dir()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using lite_align as a library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    env = {**os.environ, "LITE_ALIGN_PAPER_RELEASE": str(release)}
    res = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    jaccard = re.search(r"word-bag Jaccard within prompt: (0\.\d{3}), 95% CI \[0\.\d{3}, 0\.\d{3}\]", res.stdout)
    assert jaccard is not None and "# lite_align report" in res.stdout
    assert res.stdout.splitlines()[1].split(" | ")[0] in ("recovered", "partly", "not")
