"""Threads, batch and GPU layers chosen for the machine lite_align finds, by measurement.

    cpu_budget()                         threads worth running: physical cores this process may
                                         use, within a cgroup CPU quota
    EngineTuner(...).settings_for(path)  llama.cpp threads and live sequences for one model file,
                                         from a short calibration cached per (model sha256, machine)
    onnx_threads(embedder)               onnxruntime's intra-op threads, chosen the same way
    select_best(cells)                   the selection rule, a pure function of measurements

Why measure instead of a rule: the best setting depends on the model, the machine and the batch.
On a 2-vCPU VM (Gemma-3-270M, zero-shot prompts), 1 thread x 16 sequences gave 75.7 tokens/s,
2 threads x 16 sequences 71.8 (slower), but 2 threads x 40 sequences 128.2; on an 8-core laptop
or a GPU the numbers move again. So the calibration tries thread counts (the physical cores,
halved down to 1) against numbers of live sequences (8 to 128, climbing while it pays), decoding
a few steps of one forked prompt in each cell on one loaded model, measures the fastest cells
again, and keeps the fastest.
The cells always include today's fixed setting (1 thread x 16 sequences), so the choice is never
slower than it on the calibration. Explicit ``--threads N`` / ``--batch N`` fix that dimension.

Memory: live sequences each hold their own KV stream (prompt + answer cells), so the number
that fits depends on the context a phase needs, against ``--max-memory`` (default: 60% of the
memory available when lite_align starts, and at most ``DEFAULT_WORKING_MEMORY``, or the
preset's ``working_memory``, beyond the weights). The calibration measures only numbers of
sequences that fit the context it is asked for (no time spent on settings the run cannot use)
and keeps the model's sizes with its cells: a later, longer context chooses among the cells
already measured; a shorter one measures again only where speed still rose at the most
sequences measured.

OpenMP: llama.cpp's worker threads spin between steps unless ``OMP_WAIT_POLICY=PASSIVE`` is set
before llama.cpp is loaded; ``prepare_threads`` sets it for any setting above one thread.

Left out: separate thread counts for prompt reading and decoding, NUMA placement, and the
unified KV layout (its speed depends on how long answers get, which a few calibration steps
cannot see; ``lite-align bench --sweep --kv unified`` measures it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import native
from .engine import LlamaCppGenerator, context_cells, estimated_memory, sequences_within
from .errors import ConfigError
from .generation.base import GenerationRequest, SamplingParams
from .gguf_check import inspect_gguf, sha256_file
from .jsonio import KeyedJsonFile
from .paths import cache_dir

TUNING_FORMAT = "lite_align.tuning/1"
TUNING_FILE = "tuning.json"
BASELINE = (1, 16)  # (threads, sequences): the fixed setting before calibration existed
SEQUENCE_CANDIDATES = (8, 16, 24, 32, 48, 64, 96, 128)
GPU_SEQUENCE_CANDIDATES = (160, 192, 248)  # tried beyond 128 when layers are offloaded
CLIMB_TOLERANCE = 0.97  # stop adding sequences once a cell is below this share of the best so far
CELL_SECONDS = 0.5  # the decode time each calibration cell aims at (the fastest are measured twice)
CELL_STEPS = (3, 12)  # fewest and most decode steps in a cell
PROBE_CTX = 256  # cells per sequence in the calibration context
MEMORY_SHARE = 0.6  # default --max-memory: this share of the memory available at start
# Without --max-memory, also at most this much beyond the weights (KV cache, logits, buffers) unless
# that leaves fewer than the old fixed 16 sequences: the quick study on the embedded pair then peaks
# under 2 GB (measured: uncapped, calibration chose 2 threads x 128 sequences for Gemma-3-270M and the
# study peaked at 3.5 GB; capped at 768 MB it peaked at 1.4 GB). --max-memory lifts it.
DEFAULT_WORKING_MEMORY = 2**30
ALL_LAYERS = 999  # llama.cpp offloads min(this, the model's layers + 1)

# A prompt of ~60 tokens: what the calibration decodes after (its answer is not kept).
PROBE_PROMPT = (
    "# Query:\n```\nShould a small town spend its budget on a new library or on repairing its roads? "
    "Give the main arguments on each side.\n```\n\n# Answer:\n```\n"
)


# --------------------------------------------------------------------------------------------------
# CPUs


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process can use: ``logical`` the OS reports, ``usable`` it may run on
    (affinity), ``physical`` distinct cores among those (SMT siblings counted once), ``quota`` a
    cgroup CPU limit in CPUs (None: none)."""

    logical: int
    usable: int
    physical: int
    quota: float | None = None

    @property
    def threads(self) -> int:
        """The most threads worth running: one per usable physical core, within the quota.

        >>> CpuBudget(16, 16, 8).threads, CpuBudget(16, 16, 8, quota=2.5).threads
        (8, 2)
        """
        limit = self.physical if self.quota is None else min(self.physical, int(self.quota + 1e-9))
        return max(1, limit)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "threads": self.threads}


def parse_cpuinfo(text: str) -> dict[int, tuple[str, str]]:
    """``/proc/cpuinfo`` text -> {processor: (physical id, core id)}; {} when any processor lacks
    a core id (some ARM kernels, some VMs), so the caller falls back to another source.

    >>> parse_cpuinfo("processor : 0\\ncore id : 0\\n\\nprocessor : 1\\nphysical id : 0\\ncore id : 0\\n")
    {0: ('0', '0'), 1: ('0', '0')}
    """
    out: dict[int, tuple[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        if "core id" not in fields:
            return {}
        out[int(fields["processor"])] = (fields.get("physical id", "0"), fields["core id"])
    return out


def physical_cores(cpus: Iterable[int], topology: Mapping[int, tuple[str, str]]) -> int:
    """Distinct (package, core) pairs among ``cpus``; a CPU the topology does not know counts as
    a core of its own.

    >>> physical_cores([0, 1, 2, 3], {0: ("0", "0"), 1: ("0", "1"), 2: ("0", "0"), 3: ("0", "1")})
    2
    """
    seen: set[tuple[str, str]] = set()
    for cpu in cpus:
        seen.add(topology.get(cpu, ("cpu", str(cpu))))
    return max(1, len(seen))


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") -> CPUs, None when unlimited.

    >>> parse_cpu_max("200000 100000"), parse_cpu_max("max 100000"), parse_cpu_max("150000 100000")
    (2.0, None, 1.5)
    """
    parts = text.split()
    if len(parts) < 1 or parts[0] == "max":
        return None
    try:
        quota = float(parts[0])
        period = float(parts[1]) if len(parts) > 1 else 100000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_us: str, period_us: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` -> CPUs, None when unlimited (-1).

    >>> parse_cfs("-1", "100000"), parse_cfs("300000", "100000")
    (None, 3.0)
    """
    try:
        quota, period = float(quota_us.strip()), float(period_us.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota on this process's cgroup and its parents, in CPUs (v2 and v1)."""
    limits: list[float] = []
    for line in (_read(self_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        rel = rel.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":  # v2: walk from the process's group up to the root
            here = root / rel
            while True:
                text = _read(here / "cpu.max")
                if text and (value := parse_cpu_max(text)) is not None:
                    limits.append(value)
                if here == root or root not in here.parents:
                    break
                here = here.parent
        elif "cpu" in controllers.split(","):
            for base in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                for where in (base / rel, base):
                    quota, period = _read(where / "cpu.cfs_quota_us"), _read(where / "cpu.cfs_period_us")
                    if quota and period and (value := parse_cfs(quota, period)) is not None:
                        limits.append(value)
    return min(limits) if limits else None


def _sysfs_topology(cpus: Iterable[int]) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    for cpu in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        core, package = _read(base / "core_id"), _read(base / "physical_package_id")
        if core is None:
            return {}
        out[cpu] = ((package or "0").strip(), core.strip())
    return out


def cpu_budget() -> CpuBudget:
    """This machine's :class:`CpuBudget` (Linux: affinity, /proc/cpuinfo or sysfs topology, cgroup
    quota; macOS: hw.physicalcpu; elsewhere: every logical CPU counts as a core)."""
    logical = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        topology = parse_cpuinfo(_read(Path("/proc/cpuinfo")) or "") or _sysfs_topology(cpus)
        return CpuBudget(logical, len(cpus), physical_cores(cpus, topology), cgroup_cpu_quota())
    physical = logical
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5)
            physical = int(out.stdout.strip())
    return CpuBudget(logical, logical, max(1, min(physical, logical)))


def thread_candidates(ceiling: int) -> tuple[int, ...]:
    """Thread counts the calibration tries: the ceiling, halved down to 1.

    >>> thread_candidates(2), thread_candidates(8), thread_candidates(6)
    ((1, 2), (1, 2, 4, 8), (1, 3, 6))
    """
    out = {1}
    n = max(1, ceiling)
    while n > 1:
        out.add(n)
        n //= 2
    return tuple(sorted(out))


def prepare_threads(threads: int | None) -> None:
    """Before llama.cpp (and its OpenMP runtime) is loaded: keep worker threads from spinning
    when more than one thread may run (``threads`` None: auto)."""
    if (threads or cpu_budget().threads) > 1:
        native.quiet_openmp()


def parse_count(value: str | int | None, option: str) -> int | None:
    """``auto`` (or None) -> None; a whole number >= 1 -> itself; anything else a ConfigError.

    >>> parse_count("auto", "--threads"), parse_count("4", "--threads"), parse_count(2, "--batch")
    (None, 4, 2)
    >>> parse_count("0", "--threads")
    Traceback (most recent call last):
    lite_align.errors.ConfigError: --threads must be at least 1, got 0
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    n = _whole_number(value, option, "give auto or a whole number of at least 1")
    if n < 1:
        raise ConfigError(f"{option} must be at least 1, got {n}")
    return n


def _whole_number(value: str | int, option: str, hint: str) -> int:
    text = str(value).strip()
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or text.lstrip("+-") != str(abs(n)):
        raise ConfigError(f"{option}: {hint}, not {value!r}")
    return n


def parse_gpu_layers(value: str | int | None) -> int | None:
    """``--gpu-layers``: auto (None) or a whole number >= 0 (0: CPU only).

    >>> parse_gpu_layers("auto"), parse_gpu_layers("0"), parse_gpu_layers(12)
    (None, 0, 12)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    n = _whole_number(value, "--gpu-layers", "give auto or a whole number of layers (0 for none)")
    if n < 0:
        raise ConfigError(f"--gpu-layers must be at least 0, got {n}")
    return n


# --------------------------------------------------------------------------------------------------
# Memory

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])(i?b)?\s*$", re.IGNORECASE)


def parse_size(value: str) -> int:
    """``--max-memory``: a size with a unit (K, M, G, T; powers of 1024) -> bytes.

    >>> parse_size("6G"), parse_size("800M"), parse_size("1.5 GiB")
    (6442450944, 838860800, 1610612736)
    """
    m = _SIZE.match(value)
    if not m:
        raise ConfigError(f"--max-memory: give a size such as 6G or 800M, not {value!r}")
    n = float(m.group(1)) * 1024 ** ("kmgt".index(m.group(2).lower()) + 1)
    if n < 64 * 2**20:
        raise ConfigError(f"--max-memory: {value} is below 64M; lite_align needs more to load any model")
    return int(n)


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable, within a cgroup memory limit), None if unknown."""
    meminfo = _read(Path("/proc/meminfo")) or ""
    m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    free = int(m.group(1)) * 1024 if m else None
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read(Path(limit_file)), _read(Path(usage_file))
        if limit and usage and limit.strip().isdigit() and usage.strip().isdigit():
            room = int(limit) - int(usage)
            if int(limit) < 2**60 and room > 0:
                free = room if free is None else min(free, room)
    if free is None and sys.platform == "darwin":
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5)
            free = int(out.stdout.strip()) // 2  # total; count half of it as available
    return free


def memory_budget(max_memory: str | None = None) -> int:
    """``--max-memory`` in bytes, or :data:`MEMORY_SHARE` of the memory available (4 GB if unknown)."""
    if max_memory:
        return parse_size(max_memory)
    free = available_memory()
    return int(MEMORY_SHARE * free) if free else 4 * 2**30


# --------------------------------------------------------------------------------------------------
# GPU


def free_gpu_memory() -> int | None:
    """Free memory of the first CUDA GPU (nvidia-smi), None where there is no such tool or GPU."""
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return int(out.stdout.split()[0]) * 2**20
    return None


def gpu_layers_that_fit(
    option: int | None, *, supports_offload: bool, model_bytes: int, n_layer: int | None, free_bytes: int | None
) -> int:
    """``--gpu-layers``: the number given, else (auto) every layer when the build can offload and
    the model fits the GPU's free memory with room for its KV cache and buffers (a quarter more,
    plus 512 MB), the share of layers that fits when it does not, and 0 on a CPU-only build.
    With no memory figure (Metal's unified memory, no nvidia-smi) every layer is offloaded.

    >>> gpu_layers_that_fit(None, supports_offload=False, model_bytes=10**9, n_layer=24, free_bytes=None)
    0
    >>> gpu_layers_that_fit(None, supports_offload=True, model_bytes=10**9, n_layer=24, free_bytes=8 * 10**9)
    999
    >>> gpu_layers_that_fit(None, supports_offload=True, model_bytes=8 * 10**9, n_layer=32, free_bytes=6 * 10**9)
    17
    """
    if option is not None:
        return option
    if not supports_offload:
        return 0
    if free_bytes is None or not n_layer:
        return ALL_LAYERS
    room = free_bytes - 512 * 2**20
    need = model_bytes * 1.25
    if room >= need:
        return ALL_LAYERS
    return max(0, int(n_layer * max(0.0, room) / need))


# --------------------------------------------------------------------------------------------------
# Selection (pure)


@dataclass(frozen=True)
class Cell:
    """One measured setting: decode tokens per second with ``threads`` and ``sequences``."""

    threads: int
    sequences: int
    tokens_per_s: float

    @property
    def setting(self) -> tuple[int, int]:
        return (self.threads, self.sequences)


def select_best(cells: Sequence[Cell]) -> Cell:
    """The fastest cell; a tie goes to fewer threads, then fewer sequences (less memory).

    >>> select_best([Cell(1, 16, 75.7), Cell(2, 16, 71.8), Cell(2, 40, 128.2), Cell(1, 40, 93.4)]).setting
    (2, 40)
    """
    if not cells:
        raise ValueError("select_best needs at least one measured cell")
    return max(cells, key=lambda c: (c.tokens_per_s, -c.threads, -c.sequences))


def select_within(cells: Sequence[Cell], ceiling: int) -> tuple[int, int]:
    """The fastest setting with at most ``ceiling`` live sequences (what memory allows for the
    context at hand). The number of sequences goes up to ``ceiling`` itself, between two measured
    cells, when the next cell measured above it with the same threads is at least as fast: speed
    rose all the way there. Below the fewest sequences measured, ``ceiling`` sequences with the
    threads that were fastest there.

    >>> cells = [Cell(1, 16, 100.0), Cell(2, 16, 90.0), Cell(2, 32, 150.0), Cell(2, 64, 190.0)]
    >>> select_within(cells, 64), select_within(cells, 48), select_within(cells, 20), select_within(cells, 4)
    ((2, 64), (2, 48), (1, 16), (1, 4))
    """
    fitting = [c for c in cells if c.sequences <= ceiling]
    if not fitting:
        fewest = min(c.sequences for c in cells)
        return (select_best([c for c in cells if c.sequences == fewest]).threads, ceiling)
    best = select_best(fitting)
    above = sorted((c for c in cells if c.threads == best.threads and c.sequences > ceiling), key=lambda c: c.sequences)
    largest = max(c.sequences for c in fitting if c.threads == best.threads)
    if best.sequences == largest and above and above[0].tokens_per_s >= best.tokens_per_s:
        return (best.threads, ceiling)
    return best.setting


def select_across(by_condition: Mapping[str, Sequence[Cell]], baseline: tuple[int, int] = BASELINE) -> tuple[int, int]:
    """One setting for several workloads (the sweep's conditions): the setting whose worst speed
    relative to ``baseline`` on the same workload is highest. The baseline scores exactly 1 on
    every workload, so the setting chosen is at or above it on each one. Settings not measured on
    every workload are not considered.

    >>> a = [Cell(1, 16, 100.0), Cell(2, 32, 150.0), Cell(2, 64, 190.0)]
    >>> b = [Cell(1, 16, 80.0), Cell(2, 32, 100.0), Cell(2, 64, 79.0)]
    >>> select_across({"icl": a, "zero-shot": b})
    (2, 32)
    """
    common: set[tuple[int, int]] | None = None
    for cells in by_condition.values():
        settings = {c.setting for c in cells}
        common = settings if common is None else common & settings
    if not common or baseline not in common:
        raise ValueError(f"select_across needs the baseline {baseline} measured on every workload")

    def score(setting: tuple[int, int]) -> tuple[float, int, int]:
        ratios = []
        for cells in by_condition.values():
            speed = {c.setting: c.tokens_per_s for c in cells}
            ratios.append(speed[setting] / speed[baseline] if speed[baseline] > 0 else 0.0)
        return (min(ratios), -setting[0], -setting[1])

    return max(sorted(common), key=score)


# --------------------------------------------------------------------------------------------------
# Calibration of one model (llama.cpp)


@dataclass(frozen=True)
class EngineSettings:
    """What a llama.cpp model runs with. ``source``: given (all fixed by options), calibrated
    (measured now), cached (measured before on this machine). ``tokens_per_s`` is the chosen
    cell's calibration speed, ``baseline_tokens_per_s`` today's fixed setting's (1 thread x 16
    sequences) on the same calibration, when it was measured."""

    threads: int
    sequences: int
    gpu_layers: int = 0
    kv_unified: bool = False
    source: str = "given"
    tokens_per_s: float | None = None
    baseline_tokens_per_s: float | None = None
    cells: tuple[Cell, ...] = field(default=(), compare=False)
    measured_s: float | None = None
    created: str = ""

    def to_json(self, *, with_cells: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["cells"] = [asdict(c) for c in self.cells] if with_cells else None
        if not with_cells:
            del d["cells"]
        return d

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EngineSettings | None:
        try:
            cells = tuple(Cell(int(c["threads"]), int(c["sequences"]), float(c["tokens_per_s"])) for c in obj["cells"])
            out = cls(
                threads=int(obj["threads"]),
                sequences=int(obj["sequences"]),
                gpu_layers=int(obj.get("gpu_layers", 0)),
                kv_unified=bool(obj.get("kv_unified", False)),
                source=str(obj.get("source", "calibrated")),
                tokens_per_s=_opt_float(obj.get("tokens_per_s")),
                baseline_tokens_per_s=_opt_float(obj.get("baseline_tokens_per_s")),
                cells=cells,
                measured_s=_opt_float(obj.get("measured_s")),
                created=str(obj.get("created", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return out if out.threads >= 1 and out.sequences >= 1 else None


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def measure_cell(generator: Any, threads: int, sequences: int, steps: int) -> tuple[float, float]:
    """Decode ``steps`` tokens in each of ``sequences`` samples of one prompt with ``threads``
    threads; returns (tokens per second of decoding, seconds). Prompt reading is not counted
    (the engine's own split: decode + sample + bookkeeping)."""
    generator.set_parallelism(n_threads=threads, max_sequences=sequences)
    params = SamplingParams(temperature=0.5, repetition_penalty=1.1, max_tokens=steps, stop=())
    request = GenerationRequest(("tuning", threads, sequences), PROBE_PROMPT, tuple(range(1, sequences + 1)), params)
    before = generator.timings
    tokens = sum(r.completion_tokens for r in generator.generate([request]))
    after = generator.timings
    seconds = sum(after[k] - before[k] for k in ("decode", "sample", "bookkeeping"))
    return tokens / max(seconds, 1e-9), seconds


def calibrate_engine(
    generator: Any,
    threads: Sequence[int],
    sequences: Sequence[int],
    *,
    say: Callable[[str], None] | None = None,
    cell_seconds: float = CELL_SECONDS,
) -> list[Cell]:
    """Measure cells on one loaded generator (made for ``max(sequences)`` sequences): for each
    thread count, numbers of sequences in increasing order until two in a row are below
    :data:`CLIMB_TOLERANCE` of the best so far for that thread count (16, the baseline's, is
    always measured). Each cell decodes enough steps to take about ``cell_seconds``. Then the
    three fastest cells and the baseline are measured once more and each keeps its better figure:
    other work on the machine only ever slows a cell down, so the best of two is the closer one."""
    found: dict[tuple[int, int], tuple[float, int]] = {}  # setting -> (tokens/s, steps)
    per_step: float | None = None  # seconds per decode step per sequence, from the last cell
    room = max(1, generator.max_positions - len(generator.tokenize(PROBE_PROMPT)) - 1)

    def run(t: int, n: int, steps: int) -> float:
        nonlocal per_step
        tps, secs = measure_cell(generator, t, n, steps)
        per_step = secs / max(1, n * steps)
        if say is not None:
            say(f"  {t} thread{'s' if t > 1 else ''} x {n} sequences: {tps:.1f} tokens/s")
        return tps

    for t in threads:
        generator.set_parallelism(n_threads=t, max_sequences=1)
        measure_cell(generator, t, 1, 2)  # warm up: OpenMP starts its threads, buffers are touched
        best, worse = 0.0, 0
        for n in sequences:
            if per_step is None:
                steps = CELL_STEPS[0]
            else:
                steps = int(min(CELL_STEPS[1], max(CELL_STEPS[0], cell_seconds / max(per_step * n, 1e-9))))
            steps = min(steps, room)
            tps = run(t, n, steps)
            found[(t, n)] = (tps, steps)
            if tps > best:
                best, worse = tps, 0
            elif n > BASELINE[1] and tps < CLIMB_TOLERANCE * best:
                worse += 1
                if worse == 2:
                    break
    again = sorted(found, key=lambda k: -found[k][0])[:3]
    if BASELINE in found and BASELINE not in again:
        again.append(BASELINE)
    for t, n in again:
        tps, steps = found[(t, n)]
        found[(t, n)] = (max(tps, run(t, n, steps)), steps)
    return [Cell(t, n, round(tps, 2)) for (t, n), (tps, _) in found.items()]


class TuningCache(KeyedJsonFile):
    """``<cache_dir>/tuning.json``: settings by key (jsonio.KeyedJsonFile: an unreadable file counts
    as empty and is rewritten on the next store; a file that cannot be written is skipped)."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path if path is not None else cache_dir() / TUNING_FILE, TUNING_FORMAT)


def _cpu_model() -> str:
    m = re.search(r"^model name\s*:\s*(.+)$", _read(Path("/proc/cpuinfo")) or "", re.MULTILINE)
    return m.group(1).strip() if m else platform.processor()


def machine_key(budget: CpuBudget | None = None) -> str:
    """A short fingerprint of what makes speeds differ between machines: OS, CPU model, the CPUs
    this process may use, and the llama.cpp and onnxruntime builds."""
    from importlib import metadata

    budget = budget or cpu_budget()
    versions = []
    for dist in ("llama_cpp_python", "onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist}={metadata.version(dist)}")
    text = "|".join(
        [platform.system(), platform.machine(), _cpu_model(), json.dumps(budget.to_json(), sort_keys=True), *versions]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class EngineTuner:
    """Resolves ``--threads``, ``--batch``, ``--gpu-layers`` and ``--max-memory`` into
    :class:`EngineSettings` per model file, calibrating (once per model and machine) what is
    auto, and opens generators with them.

    ``threads``/``batch``/``gpu_layers``: None for auto, else the number given."""

    def __init__(
        self,
        *,
        threads: int | None = None,
        batch: int | None = None,
        gpu_layers: int | None = None,
        max_memory: str | None = None,
        working_memory: int | None = None,
        cache: TuningCache | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.threads = threads
        self.batch = batch
        self.gpu_layers = gpu_layers
        self.memory = memory_budget(max_memory)
        # without --max-memory, the working-memory cap: the caller's (a preset's) or the default
        self.working = None if max_memory else (working_memory or DEFAULT_WORKING_MEMORY)
        self.cache = cache
        self.say = say or (lambda _msg: None)
        self._settings: dict[tuple[str, int | None], EngineSettings] = {}  # (path, n_ctx) -> settings
        self._used: dict[str, EngineSettings] = {}  # path -> the settings it was last opened with
        self._capped: dict[str, int] = {}  # path -> the fewest sequences a memory cap left
        self._calibrated: set[str] = set()  # cache keys measured by this tuner (this run)

    @classmethod
    def from_options(
        cls,
        threads: str | int | None,
        batch: str | int | None = "auto",
        gpu_layers: str | int | None = "auto",
        max_memory: str | None = None,
        **kw: Any,
    ) -> EngineTuner:
        return cls(
            threads=parse_count(threads, "--threads"),
            batch=parse_count(batch, "--batch"),
            gpu_layers=parse_gpu_layers(gpu_layers),
            max_memory=max_memory,
            **kw,
        )

    def settings_for(self, path: str | Path, n_ctx: int | None = None) -> EngineSettings:
        """The settings for the model at ``path`` with a context of ``n_ctx`` cells per sequence
        (None: the engine's default), calibrated on first use unless all are given. Live
        sequences stay within what the memory budget allows for that context."""
        key = (str(path), n_ctx)
        if key not in self._settings:
            self._settings[key] = self._resolve(Path(path), n_ctx)
        self._used[str(path)] = self._settings[key]
        return self._settings[key]

    def open(self, path: str | Path, n_ctx: int | None = None, **kw: Any) -> Any:
        """A LlamaCppGenerator with this model's settings, its live sequences capped to the memory
        budget for the context asked for."""
        s = self.settings_for(path, n_ctx)
        gen = LlamaCppGenerator(
            path,
            n_ctx=n_ctx,
            n_threads=s.threads,
            n_gpu_layers=s.gpu_layers,
            max_sequences=s.sequences,
            kv_unified=s.kv_unified,
            memory_budget=self.memory,
            memory_working=self.working,
            **kw,
        )
        if gen.max_sequences < s.sequences:
            self._capped[str(path)] = min(gen.max_sequences, self._capped.get(str(path), s.sequences))
        return gen

    def has_settings(self, path: str | Path) -> bool:
        """Whether a model at ``path`` was resolved (opened, or asked about) through this tuner."""
        return str(path) in self._used

    def record(self, path: str | Path) -> dict[str, Any]:
        """The settings of a model as the run manifest records them (those it was last opened with)."""
        s = self._used.get(str(path)) or self.settings_for(path)
        out = s.to_json(with_cells=False)
        out["memory_budget_mb"] = round(self.memory / 2**20)
        if str(path) in self._capped:
            out["sequences_within_memory"] = self._capped[str(path)]
        return out

    # -- resolution ------------------------------------------------------------------------------

    def _gpu_layers(self, path: Path, model_bytes: int) -> int:
        if self.gpu_layers is not None:
            return self.gpu_layers
        prepare_threads(self.threads)
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            return 0

        info = inspect_gguf(path)
        return gpu_layers_that_fit(
            None,
            supports_offload=True,
            model_bytes=model_bytes,
            n_layer=info.block_count,
            free_bytes=free_gpu_memory(),
        )

    def _ceiling(self, model: Mapping[str, int], n_ctx: int | None) -> int:
        """The most live sequences the memory budget allows a model (its ``model_facts``) with a
        context of ``n_ctx`` cells (None: the engine's default)."""
        return sequences_within(
            self.memory,
            model_bytes=model["bytes"],
            cell_bytes=model["cell_bytes"],
            n_vocab=model["n_vocab"],
            n_ctx=context_cells(n_ctx, model["n_ctx_train"]),
            working=self.working,
            # facts cached before sliding windows were counted hold every layer in cell_bytes
            window_cell_bytes=model.get("window_cell_bytes", 0),
            window_cells=model.get("window_cells", 0),
        )

    def _resolve(self, path: Path, n_ctx: int | None = None) -> EngineSettings:

        model_bytes = path.stat().st_size
        gpu = self._gpu_layers(path, model_bytes)
        budget = cpu_budget()
        threads = (self.threads,) if self.threads is not None else thread_candidates(budget.threads)
        if self.threads is None and BASELINE[0] not in threads:
            threads = (BASELINE[0], *threads)
        seqs = (self.batch,) if self.batch is not None else SEQUENCE_CANDIDATES
        if self.batch is None and gpu > 0:
            seqs = (*seqs, *GPU_SEQUENCE_CANDIDATES)
        if len(threads) == 1 and len(seqs) == 1:
            return EngineSettings(threads[0], seqs[0], gpu, source="given")
        key = (
            f"llama:{sha256_file(path)}:{machine_key(budget)}:g{gpu}:t{self.threads or 'auto'}:b{self.batch or 'auto'}"
        )
        cache = self.cache or TuningCache()
        cached = cache.get(key)
        found = EngineSettings.from_json(cached) if isinstance(cached, Mapping) else None
        model = cached.get("model") if isinstance(cached, Mapping) else None
        measured_to = cached.get("ceiling") if isinstance(cached, Mapping) else None
        if found is not None and isinstance(model, Mapping) and isinstance(measured_to, int):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                ceiling = min(self._ceiling(model, n_ctx), max(seqs))
                # every setting that fits now was within reach then, or speed had peaked below
                # the memory's limit then (more sequences were measured slower): nothing to gain
                if ceiling <= measured_to or found.sequences < measured_to:
                    source = "calibrated" if key in self._calibrated else "cached"
                    return self._within(replace(found, source=source), ceiling)
        settings, model, ceiling = self._calibrate(path, threads, seqs, gpu, n_ctx)
        cache.put(key, {**settings.to_json(), "ceiling": ceiling, "model": model})
        self._calibrated.add(key)
        return self._within(settings, ceiling)

    @staticmethod
    def _within(settings: EngineSettings, ceiling: int) -> EngineSettings:
        """``settings`` with the fastest measured setting that fits ``ceiling`` sequences."""
        if not settings.cells or settings.sequences <= ceiling:
            return settings
        t, n = select_within(settings.cells, ceiling)
        speed = {c.setting: c.tokens_per_s for c in settings.cells}
        return replace(settings, threads=t, sequences=n, tokens_per_s=speed.get((t, n), settings.tokens_per_s))

    def _calibrate(
        self, path: Path, threads: Sequence[int], seqs: Sequence[int], gpu: int, n_ctx: int | None
    ) -> tuple[EngineSettings, dict[str, int], int]:
        """Measure the cells that fit the memory budget at ``n_ctx``; returns the settings, the
        model's facts for later ceilings (``model_facts``) and the ceiling measured to."""
        prepare_threads(max(threads))
        t0 = time.perf_counter()
        name = path.name
        gen = LlamaCppGenerator(
            path, n_ctx=PROBE_CTX, n_threads=max(threads), n_gpu_layers=gpu, max_sequences=max(seqs),
            memory_budget=self.memory, memory_working=self.working,
        )  # fmt: skip
        try:
            model = model_facts(gen)
            ceiling = min(self._ceiling(model, n_ctx), max(seqs), gen.max_sequences)
            fitting = tuple(n for n in seqs if n < ceiling) + (ceiling,)
            self.say(
                f"calibrating threads x live sequences for {name} on this machine "
                f"(once; threads {', '.join(map(str, threads))}; sequences up to {ceiling}"
                f"{', what memory allows' if ceiling < max(seqs) else ''})"
            )
            cells = calibrate_engine(gen, threads, fitting, say=self.say)
        finally:
            gen.close()
        best = select_best(cells)
        baseline = next((c for c in cells if c.setting == BASELINE), None)
        settings = EngineSettings(
            threads=best.threads,
            sequences=best.sequences,
            gpu_layers=gpu,
            source="calibrated",
            tokens_per_s=best.tokens_per_s,
            baseline_tokens_per_s=baseline.tokens_per_s if baseline else None,
            cells=tuple(cells),
            measured_s=round(time.perf_counter() - t0, 2),
            created=now(),
        )
        gain = f" ({best.tokens_per_s / baseline.tokens_per_s:.2f}x 1 thread x 16)" if baseline else ""
        self.say(
            f"{name}: {best.threads} thread{'s' if best.threads > 1 else ''} x {best.sequences} sequences, "
            f"{best.tokens_per_s:.1f} tokens/s{gain}"
        )
        return settings, model, ceiling


def model_facts(gen: LlamaCppGenerator) -> dict[str, int]:
    """What a memory ceiling needs to know of a loaded model (kept with its calibration, so a
    later context's ceiling needs no model loaded)."""
    return {
        "bytes": gen.info.size,
        **gen.kv_layout(),
        "n_vocab": gen.n_vocab,
        "n_ctx_train": gen.n_ctx_train,
    }


__all__ = [
    "BASELINE",
    "Cell",
    "CpuBudget",
    "EngineSettings",
    "EngineTuner",
    "TuningCache",
    "calibrate_engine",
    "cpu_budget",
    "select_across",
    "select_best",
    "select_within",
    "estimated_memory",
    "now",
    "sequences_within",
]
