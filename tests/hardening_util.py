"""Running ``lite-align`` in a subprocess and checking the promise every refusal keeps: exit 2,
one ``error:`` line and it is stderr's last, no traceback, stdout empty or one JSON document."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lite_align.cli"]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def one_line_error(res: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """The error line of a refused command, after checking the promise."""
    err = res.stderr.strip()
    assert res.returncode == code, (res.returncode, err[-2000:])
    assert "Traceback" not in res.stderr
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.endswith(errors[0]), err[-2000:]
    if res.stdout.strip():
        json.loads(res.stdout)
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


PEAK_HOOK = """\
import atexit
import os

if os.environ.get("LITE_ALIGN_TEST_PEAK_FILE"):

    def _write_peak():
        with open("/proc/self/status", encoding="ascii") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        with open(os.environ["LITE_ALIGN_TEST_PEAK_FILE"], "w", encoding="ascii") as out:
            out.write(peak)

    atexit.register(_write_peak)
"""


def capped_cli(
    *args: str, limit_bytes: int = 4 << 30, timeout: float = 120, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """``cli`` with the process's address space capped at ``limit_bytes`` (RLIMIT_AS: an
    allocation beyond it fails inside the process instead of taking the machine's memory), and its
    peak resident memory in bytes: the VmHWM the process itself reports as it exits (a test-only
    ``sitecustomize`` hook). Not the kernel's ru_maxrss, which counts the parent's memory at fork."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    with tempfile.TemporaryDirectory() as tmp:
        hook = Path(tmp) / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(PEAK_HOOK)
        peak_file = Path(tmp) / "peak"
        path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
        full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
        full_env.update(PYTHONPATH=path, LITE_ALIGN_TEST_PEAK_FILE=str(peak_file))
        res = subprocess.run(
            [*CLI, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, preexec_fn=cap
        )
        assert peak_file.is_file(), f"the process did not report its peak memory: {res.stderr[-2000:]}"
        return res, int(peak_file.read_text()) * 1024
