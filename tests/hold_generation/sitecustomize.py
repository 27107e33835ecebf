"""A test-only hook (loaded by putting this folder on PYTHONPATH): the run's generation holds,
mid-generation, once a samples file has enough lines, and waits there for the test's signal.

Environment: LITE_ALIGN_TEST_HOLD_FILE (the samples file to watch), LITE_ALIGN_TEST_HOLD_LINES
(how many complete lines it must hold), LITE_ALIGN_TEST_HOLD_READY (a file written when the run
holds). The interrupt tests send SIGINT or SIGKILL only after READY exists, so the run can neither
finish first nor be caught before it has written anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lite_align.engine as engine

_watch = Path(os.environ["LITE_ALIGN_TEST_HOLD_FILE"])
_lines = int(os.environ.get("LITE_ALIGN_TEST_HOLD_LINES", "3"))
_ready = Path(os.environ["LITE_ALIGN_TEST_HOLD_READY"])
_generate = engine.LlamaCppGenerator.generate


def _enough() -> bool:
    try:
        return _watch.read_bytes().count(b"\n") >= _lines
    except FileNotFoundError:
        return False


def _held_generate(self: Any, requests: Any) -> Iterator[Any]:
    for result in _generate(self, requests):
        yield result  # the study stores it before asking for the next one
        if _enough():
            _ready.write_text(str(os.getpid()))
            while True:  # other sequences are still being generated: the run is mid-generation
                time.sleep(0.05)


engine.LlamaCppGenerator.generate = _held_generate  # type: ignore[method-assign]
