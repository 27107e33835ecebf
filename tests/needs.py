"""What some tests need beyond a fresh clone's ./install.sh, and what happens when it is absent.

A test that needs the paper's release, the ``export`` extra or Chromium calls ``unavailable(what,
fix)`` when it is not there: the test is skipped with the reason and the command that fixes it.
CI sets ``LITE_ALIGN_REQUIRE_ALL=1`` (``.ci/run``), which turns every such skip into a failure, so
CI runs them all.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ALL_ENV = "LITE_ALIGN_REQUIRE_ALL"


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL_ENV, "") not in ("", "0")


def unavailable(what: str, fix: str) -> NoReturn:
    """Skip the calling test (or fail it under LITE_ALIGN_REQUIRE_ALL=1), saying why and what fixes it."""
    reason = f"{what}; {fix}"
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1: a missing requirement fails instead of skipping)", pytrace=False)
    pytest.skip(reason)
