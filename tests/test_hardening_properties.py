"""Property-based (hypothesis): whatever option values a user types into ``lite-align run --dry-run``
(huge, negative, NaN, infinite, empty lists), the answer is a plan, or one ``error:`` line and exit
2; never a traceback, and never more memory than a plan needs. Each example is a real subprocess
with its address space capped at 4 GiB (RLIMIT_AS) and its peak resident memory measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hardening_util import capped_cli, one_line_error
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from lite_align.conditions import ALL_CONDITIONS

PEAK_BOUND = 1 << 30  # a dry run of the tiny models needs about 300 MB

EDGES = [0, -1, 1, 2, 8, 64, 65, 8191, 8192, 10_000, 10_001, 2**31, 2**63, 2**64 + 1, 10**8, 10**12, -(10**12)]
INTS = st.one_of(st.integers(-3, 12), st.sampled_from(EDGES)).map(str)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e308", "-0.0", "0", "1e-300"]),
)
CONDITIONS = st.one_of(
    st.sampled_from(["", ",", " , ", "all", "nope", "base,,chat", "chat-greedy", "icl-knn, base"]),
    st.lists(st.sampled_from(ALL_CONDITIONS), max_size=4).map(",".join),
)
# threads: only values that are refused, or cheap to calibrate on a 2-vCPU machine
THREADS = st.sampled_from(["-1", "0", "1", "2", "257", str(10**6)])
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "--samples": INTS,
        "--max-tokens": INTS,
        "--temperature": FLOATS,
        "--seed": INTS,
        "--k": INTS,
        "--limit": INTS,
        "--ctx": INTS,
        "--gpu-layers": INTS,
        "--threads": THREADS,
        "--conditions": CONDITIONS,
    },
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One calibration and embedding cache for every example (the first valid one calibrates)."""
    return tmp_path_factory.mktemp("cache")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(options=OPTIONS)
@example(options={"--samples": "100000000"})
@example(options={"--samples": "9999", "--limit": "200"})
@example(options={"--temperature": "nan"})
@example(options={"--seed": "-1"})
@example(options={"--conditions": ","})
@example(options={"--ctx": str(2**63), "--max-tokens": "8191"})
@example(options={"--samples": "10000", "--limit": "16", "--conditions": "base"})  # 320,016 generations: a plan
def test_run_dry_run_answers_a_plan_or_one_line(
    options: dict[str, str], tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / "never-written"
    args = ["run", "--base", str(tiny_base_gguf), "--chat", str(tiny_chat_gguf), "--out", str(out)]
    args += [x for option, value in options.items() for x in (option, value)]
    res, peak = capped_cli(*args, "--dry-run", "--json", env={"LITE_ALIGN_CACHE": str(cache_dir)})
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    event(f"exit {res.returncode}")
    if res.returncode == 0:
        plan = json.loads(res.stdout)  # the plan, and nothing else on stdout
        assert plan["format"] == "lite_align.plan/1" and plan["pending_samples"] > 0
    else:
        one_line_error(res)
    assert peak < PEAK_BOUND, f"peak memory {peak / 1e6:.0f} MB for {options}"
    assert not out.exists()  # a dry run writes nothing
