"""A plan before a long run: how much work is left, and about how long it will take here.

    pending work (study.Study.pending) + token counts + calibrations  ->  RunPlan (plain data)

Per model file the plan counts the samples still to generate, the prompt tokens the engine will
read (a condition's shared prefix once, then each prompt's own part; the samples of one prompt
share its reading) and the most new tokens (samples x max_tokens). The time comes from a short
calibration of that model on this machine (:func:`calibrate`): prompt tokens read per second and
generated tokens per second with the engine's parallel sequences, kept in the cache per (model
sha256, threads, GPU layers, live sequences: the settings lite_align.tuning chose or the options
gave) so the next plan needs no calibration.

The time is an upper bound of sorts: every answer is assumed to run to ``max_tokens`` (answers
that stop early take less), and prompts that will quote answers not generated yet count those
answers at ``max_tokens`` tokens each (marked as estimated). Left out: the sampling preflight
(a few short samples), the slowdown of attention over long contexts, and server backends, whose
speed depends on the server (no time is given for them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .generation.base import GenerationRequest, SamplingParams
from .jsonio import KeyedJsonFile
from .paths import cache_dir
from .study import PendingWork

PLAN_FORMAT = "lite_align.plan/1"
CALIBRATION_FORMAT = "lite_align.calibration/1"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_BUDGET_S = 3.0  # the decode probe's share of a model's calibration
CALIBRATION_STEPS = (2, 16)  # fewest and most decode steps of the probe
CALIBRATION_SEQUENCES = 128  # most parallel sequences of the probe (the engine's, as tuned)

# A zero-shot prompt of about 150 tokens (the base format): what a prompt read costs.
CALIBRATION_QUERY = (
    "Some people say that working from home makes teams more productive because nobody loses time "
    "commuting, meetings are shorter and people can concentrate without interruptions. Others say "
    "the opposite: that ideas come from chance conversations in the corridor, that new colleagues "
    "learn by watching experienced ones, and that the line between work and rest disappears when "
    "the office is the kitchen table. Which of these views is better supported, what would a fair "
    "comparison have to measure, and how should a small company with twelve employees decide?"
)


# --------------------------------------------------------------------------------------------------
# Calibration


@dataclass(frozen=True)
class Calibration:
    """How fast one model runs here: prompt tokens read per second, and generated tokens per
    second over ``sequences`` parallel sequences; ``load_s``: seconds to open the model."""

    prompt_tps: float
    decode_tps: float
    sequences: int
    load_s: float
    measured_s: float
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Calibration | None:
        try:
            cal = cls(
                float(obj["prompt_tps"]),
                float(obj["decode_tps"]),
                int(obj["sequences"]),
                float(obj["load_s"]),
                float(obj["measured_s"]),
                str(obj.get("created", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return cal if cal.prompt_tps > 0 and cal.decode_tps > 0 else None


def calibration_key(model_sha256: str, threads: int, gpu_layers: int = 0, sequences: int | None = None) -> str:
    """The cache key of a calibration (the live sequences count when given: they set the speed).

    >>> calibration_key("abab", 1), calibration_key("abab", 2, 0, 40)
    ('abab:t1:g0', 'abab:t2:g0:s40')
    """
    return f"{model_sha256}:t{threads}:g{gpu_layers}" + (f":s{sequences}" if sequences else "")


def calibrate(generator: Any, *, load_s: float = 0.0, budget_s: float = CALIBRATION_BUDGET_S) -> Calibration:
    """Measure ``generator`` (an engine.LlamaCppGenerator, or anything with its ``generate``):
    a warm-up, one prompt read with one new token, then as many decode steps of the engine's
    parallel sequences as fit in ``budget_s`` (estimated from the prompt speed, 2 to 16 steps).
    Stop strings are off; a sample that ends early at its end token counts only its tokens."""
    t_start = time.perf_counter()
    prompt = "# Query:\n```\n" + CALIBRATION_QUERY + "\n```\n\n# Answer:\n```\n"
    n_prompt = len(generator.tokenize(prompt))

    def run(key: str, text: str, seeds: Sequence[int], max_tokens: int) -> tuple[float, int]:
        params = SamplingParams(temperature=0.5, repetition_penalty=1.1, max_tokens=max_tokens, stop=())
        t0 = time.perf_counter()
        results = list(
            generator.generate([GenerationRequest(key=(key,), prompt=text, seeds=tuple(seeds), params=params)])
        )
        return time.perf_counter() - t0, sum(r.completion_tokens for r in results)

    run("calibration-warmup", "Hello", [1], 1)
    read_s, _ = run("calibration-read", prompt, [2], 1)
    prompt_tps = n_prompt / max(read_s, 1e-6)
    sequences = max(1, min(int(getattr(generator, "max_sequences", 8)), CALIBRATION_SEQUENCES))
    step_guess = 1.5 * sequences / prompt_tps  # a decode step of n sequences ~ reading n tokens
    steps = int(max(CALIBRATION_STEPS[0], min(CALIBRATION_STEPS[1], budget_s / max(step_guess, 1e-6))))
    wall, tokens = run("calibration-decode", prompt, list(range(3, 3 + sequences)), steps)
    decode_s = max(wall - read_s, 1e-6)  # the probe reads the prompt once, then decodes
    decode_tps = max(tokens, 1) / decode_s
    return Calibration(
        prompt_tps=round(prompt_tps, 2),
        decode_tps=round(decode_tps, 2),
        sequences=sequences,
        load_s=round(load_s, 3),
        measured_s=round(time.perf_counter() - t_start, 3),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


class CalibrationCache:
    """``<cache_dir>/calibration.json``: calibrations by :func:`calibration_key` (jsonio.KeyedJsonFile:
    a file that cannot be read is treated as empty and rewritten on the next store; one that cannot
    be written is skipped, and the next plan calibrates again)."""

    def __init__(self, path: Path | None = None) -> None:
        self.file = KeyedJsonFile(path if path is not None else cache_dir() / CALIBRATION_FILE, CALIBRATION_FORMAT)
        self.path = self.file.path

    def get(self, key: str) -> Calibration | None:
        obj = self.file.get(key)
        return Calibration.from_json(obj) if isinstance(obj, Mapping) else None

    def put(self, key: str, cal: Calibration) -> None:
        self.file.put(key, cal.to_json())


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class ModelPlan:
    """The work left for one model file. ``prompt_tokens`` includes ``estimated_prompt_tokens``
    (answers and summaries not generated yet, counted at their token budgets)."""

    name: str
    path: str
    backend: str
    phases: tuple[str, ...]
    requests: int
    samples: int
    prompt_tokens: int
    estimated_prompt_tokens: int
    max_new_tokens: int
    seconds: float | None = None
    calibration: Calibration | None = None
    calibration_cached: bool = False
    by_condition: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["phases"] = list(self.phases)
        d["calibration"] = self.calibration.to_json() if self.calibration else None
        return d


@dataclass(frozen=True)
class RunPlan:
    run_dir: str
    resumed: bool
    done_samples: int
    models: tuple[ModelPlan, ...]
    notes: tuple[str, ...] = ()

    @property
    def pending_samples(self) -> int:
        return sum(m.samples for m in self.models)

    @property
    def seconds(self) -> float | None:
        """The whole run's estimate; None when a model with work left has none."""
        times = [m.seconds for m in self.models if m.samples]
        return None if any(t is None for t in times) else round(sum(t for t in times if t is not None), 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "run_dir": self.run_dir,
            "resumed": self.resumed,
            "done_samples": self.done_samples,
            "pending_samples": self.pending_samples,
            "seconds": self.seconds,
            "models": [m.to_json() for m in self.models],
            "notes": list(self.notes),
        }


def estimate_seconds(cal: Calibration, prompt_tokens: int, new_tokens: int) -> float:
    """Opening the model, reading the prompts, and generating every token at the calibrated speed.

    >>> estimate_seconds(Calibration(100.0, 20.0, 16, 0.5, 1.0), 1000, 200)
    20.5
    """
    return round(cal.load_s + prompt_tokens / cal.prompt_tps + new_tokens / cal.decode_tps, 1)


def build_plan(
    work: Sequence[PendingWork],
    count_tokens: Mapping[str, Callable[[str], int]],
    calibrations: Mapping[str, tuple[Calibration | None, bool]],
    *,
    run_dir: str = "",
    resumed: bool = False,
    done_samples: int = 0,
    notes: Sequence[str] = (),
) -> RunPlan:
    """Sum ``work`` per model file (keyed by ``ModelRef.path``, in the order first met).

    ``count_tokens[path](text)`` counts a text's tokens with that model's tokenizer;
    ``calibrations[path]`` is (calibration or None, whether it came from the cache). A model with
    no calibration gets no time."""
    groups: dict[str, list[PendingWork]] = {}
    for w in work:
        groups.setdefault(w.model.path, []).append(w)
    models = []
    for path, items in groups.items():
        count = count_tokens[path]
        prefix_tokens: dict[str, int] = {}
        read = estimated = new = samples = 0
        by_condition: dict[str, int] = {}
        for w in items:
            n = count(w.prompt)
            if w.prefix:
                if w.condition not in prefix_tokens:
                    prefix_tokens[w.condition] = count(w.prefix)
                    read += prefix_tokens[w.condition]
                n = max(0, n - prefix_tokens[w.condition])
            read += n + w.estimated_tokens
            estimated += w.estimated_tokens
            new += w.samples * w.max_tokens
            samples += w.samples
            by_condition[w.condition] = by_condition.get(w.condition, 0) + w.samples
        cal, cached = calibrations.get(path, (None, False))
        ref = items[0].model
        models.append(
            ModelPlan(
                name=ref.name,
                path=path,
                backend=ref.backend,
                phases=tuple(dict.fromkeys(w.phase for w in items)),
                requests=len(items),
                samples=samples,
                prompt_tokens=read,
                estimated_prompt_tokens=estimated,
                max_new_tokens=new,
                seconds=estimate_seconds(cal, read, new) if cal else None,
                calibration=cal,
                calibration_cached=cached,
                by_condition=by_condition,
            )
        )
    all_notes = list(notes)
    if any(m.estimated_prompt_tokens for m in models):
        all_notes.append(
            "prompt tokens include an estimate: answers and summaries not generated yet count at their token budget"
        )
    if models and any(m.seconds is None for m in models):
        all_notes.append("no time for server backends: their speed depends on the server")
    return RunPlan(run_dir, resumed, done_samples, tuple(models), tuple(all_notes))
