"""llama.cpp's library loads before numpy in every command that may open a model (a CUDA build
crashed in the first model load when numpy came first), and the engine warns a library user whose
process loaded them the other way round on a GPU build."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_cli import ROOT

from lite_align import engine, native

# The CLI, started the way the `lite-align` script starts it, reporting at exit which of numpy and
# llama.cpp's library module this process imported, in import order.
_REPORTING_CLI = (
    "import atexit, sys\n"
    "watched = ('numpy', 'llama_cpp.llama_cpp')\n"
    "order = lambda: ' '.join(m for m in sys.modules if m in watched)\n"
    "atexit.register(lambda: sys.stderr.write('\\nimport-order: ' + order()))\n"
    "from lite_align.cli import main\n"
    "sys.argv[0] = 'lite-align'\n"
    "main()\n"
)


def run_reporting(*args: str, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    res = subprocess.run(
        [sys.executable, "-c", _REPORTING_CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    marker = res.stderr.rsplit("import-order:", 1)
    assert len(marker) == 2, res.stderr[-2000:]
    return res, marker[1].split()


def test_the_module_doctests_pass() -> None:
    assert doctest.testmod(native).failed == 0


def test_importing_the_cli_loads_no_numpy() -> None:
    """What the commands rely on: until a command runs, nothing has imported numpy."""
    code = "import sys, lite_align, lite_align.cli, lite_align.native; print('numpy' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr[-2000:]


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--threads", "0"),
        ("bench", "--threads", "0"),
        ("bench", "--sweep", "--threads", "0,1"),
        ("judge", "check", "--judge", "no-such.gguf", "--threads", "0"),
        ("explain", "--judge", "no-such.gguf", "--base", "no-such.jsonl", "--aligned", "no-such.jsonl"),
    ],
    ids=["run", "bench", "bench-sweep", "judge-check", "explain-judge"],
)
def test_every_command_that_opens_a_model_loads_llama_before_numpy(args: tuple[str, ...], tmp_path: Path) -> None:
    """Each fails on its arguments, after the point where it loads llama.cpp: the order is already set."""
    res, order = run_reporting(*args, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert order == ["llama_cpp.llama_cpp", "numpy"], (order, res.stderr[-1000:])


def test_a_model_opens_and_samples_with_llama_loaded_first(tiny_base_gguf: Path, tmp_path: Path) -> None:
    res, order = run_reporting(
        "bench", "--model", str(tiny_base_gguf), "--json", "--prompts", "1", "--samples", "2", "--max-tokens", "4",
        "--conditions", "zero-shot", "--no-naive", "--threads", "2", "--batch", "2", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert order == ["llama_cpp.llama_cpp", "numpy"]
    doc = json.loads(res.stdout)
    assert doc["settings"]["n_threads"] == 2
    assert "RuntimeWarning" not in res.stderr


def test_run_study_from_python_loads_llama_before_numpy() -> None:
    code = (
        "import sys, lite_align as la; la.run_study; la.read_samples\n"
        "print(' '.join(m for m in sys.modules if m in ('numpy', 'llama_cpp.llama_cpp')))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["llama_cpp.llama_cpp", "numpy"], res.stderr[-2000:]


def test_commands_without_a_model_do_not_load_llama(tmp_path: Path) -> None:
    res, order = run_reporting("release", "path", "--json", cwd=tmp_path)
    assert "llama_cpp.llama_cpp" not in order, res.stderr[-2000:]


def test_the_engine_warns_when_a_gpu_build_loads_after_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    llama = engine._import_llama(1)
    monkeypatch.setattr(native, "loaded_after_numpy", lambda modules=None: True)
    monkeypatch.setattr(llama, "llama_supports_gpu_offload", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        engine._import_llama(1)
    assert [w.category for w in caught] == [RuntimeWarning] and "load_llama_first" in str(caught[0].message)
    monkeypatch.setattr(llama, "llama_supports_gpu_offload", lambda: False)  # a CPU build runs in either order
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine._import_llama(1)


def test_the_wait_policy_is_set_before_llama_loads_and_a_users_value_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert native.load_llama_first(quiet=False) is True
    assert "OMP_WAIT_POLICY" not in os.environ
    native.load_llama_first()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    native.load_llama_first()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
