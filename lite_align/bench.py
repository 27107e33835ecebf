"""Engine benchmark: the naive per-sample loop, the batched engine, and llama.cpp's raw limit.

For each condition the same prompts and seeds go through

1. **naive**: ``llama_cpp.Llama.create_completion`` once per sample (own seed; temperature 0.5,
   repetition penalty 1.1, no top-k/top-p/min-p), the state reset before each sample so every
   sample reads its whole prompt again, as a loop over a plain completion API does;
2. **engine**: ``LlamaCppGenerator.generate`` on all requests at once (prefix cache, fork
   sampling, batching), from an empty KV cache;
3. **limit**: the engine's recorded llama.cpp operations replayed with no sampling and no
   bookkeeping: the same prompt reads, the same prefix copies, the same batch of sequences at
   every step, the same number of steps. What no sampler or scheduler on top of this llama.cpp
   build can beat.

Stop strings are ignored (all three run to ``max_tokens`` unless the model emits its end token),
and tokens/s counts generated tokens over end-to-end wall time, prompt reading included.

Measured (Gemma-3-270M Q4_K_M, 1 thread of 2 vCPUs, 8 prompts x 5 samples, 128 tokens, best of
2 for engine and limit, other jobs running on the machine):

    condition    naive tok/s  engine tok/s  limit tok/s  speedup  share of limit
    icl-static          29.5         110.7        115.5     3.75x        96%
    zero-shot           66.6         123.1        129.5     1.85x        95%

Engine time split, icl-static: prompt 2.7 s, decode 42.3 s, sample 1.1 s, bookkeeping 0.05 s.
With llama-cpp-python's own prompt cache left on (``naive_reset=False``: it keeps the longest
common prefix of consecutive calls) the naive loop reaches 60.3 tok/s on icl-static (1.7x).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lite_align.engine import LlamaCppGenerator
from lite_align.generation.base import GenerationRequest, SamplingParams

from .tuning import BASELINE, Cell, cpu_budget, select_across

BENCH_INSTRUCTIONS = (
    "Below are queries from users, each followed by an answer written by a careful assistant. "
    "The assistant is helpful, honest and harmless. It answers the question that was asked, "
    "gives the main considerations on each side when people reasonably disagree, and organises "
    "longer answers with short paragraphs or lists so they are easy to scan. It admits what it "
    "does not know, avoids made-up facts, and politely declines requests that could cause harm, "
    "explaining why. Its answers are detailed but never padded, and they end with a short "
    "summary or a practical suggestion when that helps the reader."
)

BENCH_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What can I do to sleep better at night?",
        "Good sleep usually comes from a few steady habits rather than one trick. Here are the "
        "changes that help most people:\n\n"
        "1. Keep a regular schedule. Going to bed and getting up at the same time every day, "
        "weekends included, sets your body clock so that you feel tired at the right hour.\n"
        "2. Make the bedroom dark, quiet and cool. Heavy curtains, earplugs or a fan, and a "
        "temperature a little below what you would choose during the day all make a difference.\n"
        "3. Watch caffeine and alcohol. Caffeine can stay in your system for six hours or more, so "
        "stop drinking coffee, tea and cola by early afternoon. Alcohol makes you drowsy at first "
        "but breaks up sleep later in the night.\n"
        "4. Dim the screens. Bright light in the evening delays the signal that it is time to "
        "sleep. Put the phone away half an hour before bed, or at least lower its brightness.\n"
        "5. Build a wind-down routine. Reading, a warm shower or some gentle stretching tells your "
        "mind that the day is over.\n"
        "6. Get daylight and movement. Time outside in the morning and regular exercise both "
        "deepen sleep, as long as hard workouts are not too close to bedtime.\n"
        "7. Do not fight wakefulness. If you lie awake for more than twenty minutes, get up and do "
        "something calm in low light until you feel sleepy again.\n\n"
        "If you snore loudly, wake up gasping, or still feel exhausted after weeks of good habits, "
        "talk to a doctor: conditions such as sleep apnoea are common and treatable.",
    ),
    (
        "Is drinking coffee good or bad for you?",
        "For most healthy adults, moderate coffee drinking appears to be neutral or mildly good for "
        "health, but the answer depends on how much you drink and on who you are.\n\n"
        "On the positive side, large observational studies link three to four cups a day with a "
        "somewhat lower risk of type 2 diabetes, liver disease and Parkinson's disease, and with "
        "slightly lower overall mortality. Coffee also improves alertness and reaction time, which "
        "is why so many people rely on it in the morning.\n\n"
        "There are downsides as well. Too much caffeine can cause jitteriness, a racing heart, "
        "stomach upset and poor sleep, especially when it is drunk late in the day. People who "
        "are pregnant are usually advised to keep caffeine below about 200 mg a day, roughly two "
        "cups. Unfiltered coffee, such as French press or boiled coffee, contains oils that can "
        "raise cholesterol, and sweet coffee drinks can add a surprising amount of sugar and fat.\n\n"
        "It is also worth remembering that most of the evidence comes from observational studies. "
        "Coffee drinkers differ from non-drinkers in many ways, so the studies show associations, "
        "not proof that coffee itself causes the benefits.\n\n"
        "In short: if you enjoy coffee, sleep well and have no medical reason to avoid it, a few "
        "cups a day is generally considered safe. If it makes you anxious or keeps you awake, "
        "cutting back or switching to decaf is a reasonable choice.",
    ),
    (
        "How should I start learning the guitar as an adult?",
        "Adults often learn faster than they expect, because they can practise with a clear plan. "
        "A simple way to begin:\n\n"
        "- Choose a comfortable instrument. An acoustic guitar with light strings, or an electric "
        "guitar with a small amplifier, is fine. Ask a shop to check that the strings sit low "
        "over the neck, since a badly set up guitar hurts your fingers and slows progress.\n"
        "- Learn a handful of open chords first. G, C, D, E minor and A minor are enough to play "
        "hundreds of songs. Practise switching between two chords until the change is smooth.\n"
        "- Practise little and often. Fifteen to twenty minutes every day beats two hours once a "
        "week. Your fingertips will be sore for the first couple of weeks; that passes as "
        "calluses form.\n"
        "- Use a metronome or play along with recordings. Keeping steady time matters more than "
        "playing fast, and it makes playing with other people much easier later.\n"
        "- Pick songs you love. Motivation is the main thing that keeps adults practising, so "
        "choose simple versions of music you actually want to play.\n"
        "- Consider a few lessons. Even three or four sessions with a teacher can fix problems "
        "with posture and technique before they become habits. Online courses and videos are a "
        "good, cheaper complement.\n\n"
        "Expect to play simple songs within a month or two of regular practice. Progress comes in "
        "bursts, so do not be discouraged by slow weeks.",
    ),
)

BENCH_QUERIES: tuple[str, ...] = (
    "Is it better to rent or to buy a home?",
    "Should children learn to program in primary school?",
    "Are electric cars really better for the environment?",
    "Does working from home make people more productive?",
    "Does social media make people lonelier?",
    "Should museums return objects to the countries they came from?",
    "Is it still worth learning Latin today?",
    "Can video games be considered art?",
)


def _block(title: str, body: str) -> str:
    return f"# {title}:\n```\n{body}\n```\n\n"


def zero_shot_prompt(query: str) -> str:
    return f"# Query:\n```\n{query}\n```\n\n# Answer:\n```\n"


def icl_prefix() -> str:
    """Instructions and the three static examples: the part every in-context prompt shares."""
    parts = [f"# Instructions:\n\n{BENCH_INSTRUCTIONS}\n\n"]
    parts += [_block("Query", q) + _block("Answer", a) for q, a in BENCH_EXAMPLES]
    return "".join(parts)


def bench_requests(condition: str, n_prompts: int, n_samples: int, max_tokens: int) -> list[GenerationRequest]:
    if condition not in ("icl-static", "zero-shot"):
        raise ValueError(f"unknown benchmark condition {condition!r}")
    params = SamplingParams(temperature=0.5, repetition_penalty=1.1, max_tokens=max_tokens)
    prefix = icl_prefix() if condition == "icl-static" else ""
    queries = [BENCH_QUERIES[i % len(BENCH_QUERIES)] for i in range(n_prompts)]
    return [
        GenerationRequest(
            key=(condition, i),
            prompt=prefix + zero_shot_prompt(q),
            seeds=tuple(1000 * i + j + 1 for j in range(n_samples)),
            params=params,
            prefix=prefix,
        )
        for i, q in enumerate(queries)
    ]


def _naive(
    model_path: Path, requests: list[GenerationRequest], n_threads: int, n_ctx: int, reset: bool, n_gpu_layers: int = 0
) -> tuple[int, float]:
    """Generated tokens and wall seconds of the one-call-per-sample loop. With ``reset=False``
    llama-cpp-python's own prompt cache keeps the longest common token prefix of consecutive
    calls (one sequence: the shared prefix, or the whole prompt between samples of a prompt)."""
    from llama_cpp import Llama

    llm = Llama(
        str(model_path),
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        n_batch=512,
        n_gpu_layers=n_gpu_layers,
        verbose=False,
    )
    tokens = 0
    t0 = time.perf_counter()
    for req in requests:
        p = req.params
        for seed in req.seeds:
            if reset:
                llm.reset()  # read the whole prompt again, as an independent call would
            out: Any = llm.create_completion(
                req.prompt,
                max_tokens=p.max_tokens,
                temperature=p.temperature,
                repeat_penalty=p.repetition_penalty,
                top_k=0,
                top_p=1.0,
                min_p=0.0,
                seed=seed,
            )
            tokens += int(out["usage"]["completion_tokens"])
    elapsed = time.perf_counter() - t0
    llm.close()
    return tokens, elapsed


def run_bench(
    model_path: str | Path,
    *,
    n_prompts: int = 8,
    n_samples: int = 5,
    max_tokens: int = 128,
    conditions: tuple[str, ...] = ("icl-static", "zero-shot"),
    n_threads: int = 1,
    max_sequences: int = 16,
    n_ctx: int | None = None,
    n_gpu_layers: int = 0,
    kv_unified: bool = False,
    naive: bool = True,
    naive_reset: bool = True,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure naive, engine and limit tokens/s per condition on one model, in this process.

    Returns ``{"model": ..., "settings": {...}, "conditions": {name: {...}}}`` where each condition
    holds naive/engine/limit tokens per second, ``speedup_vs_naive``, ``share_of_limit``, the
    token counts and seconds, and the engine's time split (prompt/decode/sample/bookkeeping).
    """
    model_path = Path(model_path)
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {
        "model": str(model_path),
        "settings": {
            "n_prompts": n_prompts,
            "n_samples": n_samples,
            "max_tokens": max_tokens,
            "n_threads": n_threads,
            "max_sequences": max_sequences,
            "n_gpu_layers": n_gpu_layers,
            "kv_unified": kv_unified,
            "naive_rereads_prompt": naive_reset,
            "repeats": repeats,
            "temperature": 0.5,
            "repetition_penalty": 1.1,
            "stops": "ignored",
            "wall_time": "end to end, prompt reading included",
        },
        "conditions": {},
    }
    gen = LlamaCppGenerator(
        model_path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        max_sequences=max_sequences,
        kv_unified=kv_unified,
        n_gpu_layers=n_gpu_layers,
    )
    try:
        for condition in conditions:
            requests = bench_requests(condition, n_prompts, n_samples, max_tokens)
            engine_s = limit_s = float("inf")
            for attempt in range(repeats):  # engine and limit alternate; the best of each counts
                say(f"{condition}: engine ({attempt + 1}/{repeats})")
                gen.clear_cache()
                before = gen.timings
                gen.trace = []
                t0 = time.perf_counter()
                results = list(gen.generate(requests))
                elapsed = time.perf_counter() - t0
                trace, gen.trace = gen.trace, None
                if elapsed < engine_s:
                    engine_s = elapsed
                    split = {k: v - before[k] for k, v in gen.timings.items()}
                tokens = sum(r.completion_tokens for r in results)
                say(f"{condition}: limit ({attempt + 1}/{repeats})")
                limit_s = min(limit_s, gen.replay(trace))
            row: dict[str, Any] = {
                "samples": len(results),
                "engine_tokens": tokens,
                "engine_seconds": engine_s,
                "engine_tokens_per_s": tokens / engine_s,
                "limit_seconds": limit_s,
                "limit_tokens_per_s": tokens / limit_s,
                "share_of_limit": limit_s / engine_s,
                "engine_split_seconds": split,
                "llama_decode_calls": sum(op.kind == "decode" for op in trace),
            }
            if naive:
                say(f"{condition}: naive")
                longest = max(len(gen.tokenize(r.prompt)) for r in requests)
                naive_ctx = -(-(longest + max_tokens + 8) // 256) * 256
                naive_tokens, naive_s = _naive(model_path, requests, n_threads, naive_ctx, naive_reset, n_gpu_layers)
                row.update(
                    naive_tokens=naive_tokens,
                    naive_seconds=naive_s,
                    naive_tokens_per_s=naive_tokens / naive_s,
                    speedup_vs_naive=(tokens / engine_s) / (naive_tokens / naive_s),
                )
            out["conditions"][condition] = row
    finally:
        gen.close()
    return out


def run_bench_generator(
    gen: Any,
    name: str,
    backend_name: str,
    *,
    n_prompts: int = 8,
    n_samples: int = 5,
    max_tokens: int = 128,
    conditions: tuple[str, ...] = ("icl-static", "zero-shot"),
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The same requests as ``run_bench``, through any backend's generator as it comes: engine
    tokens/s per condition (best of ``repeats``). The naive loop and the raw limit need a local
    llama.cpp model, so they are left out (and the result says so)."""
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {
        "model": name,
        "settings": {
            "backend": backend_name,
            "n_prompts": n_prompts,
            "n_samples": n_samples,
            "max_tokens": max_tokens,
            "repeats": repeats,
            "temperature": 0.5,
            "repetition_penalty": 1.1,
            "stops": "ignored",
            "wall_time": "end to end, prompt reading included",
        },
        "conditions": {},
        "notes": [
            f"{name} runs on the {backend_name} backend: engine speed only (naive loop and raw limit need llama.cpp)"
        ],
    }
    for condition in conditions:
        requests = bench_requests(condition, n_prompts, n_samples, max_tokens)
        best, tokens, samples = float("inf"), 0, 0
        for attempt in range(repeats):
            say(f"{condition}: engine ({attempt + 1}/{repeats})")
            t0 = time.perf_counter()
            results = list(gen.generate(requests))
            elapsed = time.perf_counter() - t0
            if elapsed < best:
                best, tokens, samples = elapsed, sum(r.completion_tokens for r in results), len(results)
        out["conditions"][condition] = {
            "samples": samples,
            "engine_tokens": tokens,
            "engine_seconds": best,
            "engine_tokens_per_s": tokens / best if best > 0 else None,
        }
    return out


# --------------------------------------------------------------------------------------------------
# The sweep: threads x live sequences (x GPU layers)

SWEEP_FORMAT = "lite_align.sweep/1"
SWEEP_SEQUENCES = (8, 16, 24, 32, 48, 64)


def sweep_sequences(candidates: tuple[int, ...], n_samples_total: int) -> tuple[int, ...]:
    """The sequence counts worth measuring: more live sequences than samples change nothing, so
    the grid stops at the total (which is added); today's 16 is always kept.

    >>> sweep_sequences((8, 16, 24, 32, 48, 64), 40)
    (8, 16, 24, 32, 40)
    """
    kept = {n for n in candidates if n < n_samples_total} | {min(max(candidates), n_samples_total), 16}
    return tuple(sorted(kept))


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda msg: say(prefix + msg)


def bench_context(model_path: str | Path, conditions: tuple[str, ...], n_prompts: int, max_tokens: int) -> int:
    """One sequence's context for the benchmark's requests: the longest prompt and its answer (so
    many live sequences do not each reserve the model's default 2,048 cells)."""
    with LlamaCppGenerator(model_path, n_ctx=256, max_sequences=1) as gen:
        longest = max(len(gen.tokenize(r.prompt)) for c in conditions for r in bench_requests(c, n_prompts, 1, 1))
    return longest + max_tokens + 8


def run_sweep(
    model_path: str | Path,
    *,
    threads: tuple[int, ...],
    sequences: tuple[int, ...],
    gpu_layers: tuple[int, ...] = (0,),
    n_prompts: int = 8,
    n_samples: int = 5,
    max_tokens: int = 96,
    conditions: tuple[str, ...] = ("icl-static", "zero-shot"),
    naive: bool = True,
    kv_unified: bool = False,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Naive, engine and limit tokens/s for every (threads, live sequences, GPU layers) cell, one
    model, in this process, and the cell the auto selection rule picks from these measurements
    (``tuning.select_across``: the best worst-case speed relative to 1 thread x 16 sequences,
    which is therefore always measured). The naive loop does not batch, so it is measured once
    per (threads, GPU layers) and shown in each of its cells."""
    say = progress or (lambda _msg: None)
    threads = tuple(sorted(set(threads) | {BASELINE[0]}))
    sequences = tuple(sorted(set(sequences) | {BASELINE[1]}))
    gpu_layers = tuple(sorted(set(gpu_layers)))
    naive_rows: dict[tuple[int, int], dict[str, Any]] = {}
    cells: list[dict[str, Any]] = []
    total = len(threads) * len(sequences) * len(gpu_layers)
    n_ctx = None if kv_unified else bench_context(model_path, conditions, n_prompts, max_tokens)
    for g in gpu_layers:
        for t in threads:
            for n in sequences:
                say(f"cell {len(cells) + 1}/{total}: {t} thread{'s' if t > 1 else ''} x {n} sequences, {g} GPU layers")
                result = run_bench(
                    model_path,
                    n_prompts=n_prompts,
                    n_samples=n_samples,
                    max_tokens=max_tokens,
                    conditions=conditions,
                    n_threads=t,
                    max_sequences=n,
                    n_ctx=n_ctx,
                    n_gpu_layers=g,
                    kv_unified=kv_unified,
                    naive=naive and (t, g) not in naive_rows,
                    repeats=repeats,
                    progress=_prefixed(say, f"  {t}x{n}: "),
                )
                rows = result["conditions"]
                if naive and (t, g) not in naive_rows:
                    naive_rows[(t, g)] = {
                        c: {k: v for k, v in r.items() if k.startswith("naive_")} for c, r in rows.items()
                    }
                for c, r in rows.items():
                    r.update(naive_rows.get((t, g), {}).get(c, {}))
                    if "naive_tokens_per_s" in r:
                        r["speedup_vs_naive"] = r["engine_tokens_per_s"] / r["naive_tokens_per_s"]
                cells.append({"threads": t, "sequences": n, "gpu_layers": g, "conditions": rows})
    chosen: dict[str, Any] = {}
    for g in gpu_layers:  # a choice per GPU setting: the baseline of each is 1 thread x 16 there
        by_condition = {
            c: [Cell(x["threads"], x["sequences"], x["conditions"][c]["engine_tokens_per_s"]) for x in cells
                if x["gpu_layers"] == g]
            for c in conditions
        }  # fmt: skip
        t, n = select_across(by_condition, BASELINE)
        speed = {c: {cell.setting: cell.tokens_per_s for cell in v} for c, v in by_condition.items()}
        chosen[str(g)] = {
            "threads": t,
            "sequences": n,
            "gpu_layers": g,
            "conditions": {
                c: {
                    "engine_tokens_per_s": speed[c][(t, n)],
                    "baseline_tokens_per_s": speed[c][BASELINE],
                    "vs_baseline": speed[c][(t, n)] / speed[c][BASELINE],
                }
                for c in conditions
            },
        }
    best_gpu = max(chosen.values(), key=lambda x: min(v["engine_tokens_per_s"] for v in x["conditions"].values()))
    return {
        "format": SWEEP_FORMAT,
        "model": str(model_path),
        "machine": cpu_budget().to_json(),
        "settings": {
            "n_prompts": n_prompts,
            "n_samples": n_samples,
            "max_tokens": max_tokens,
            "conditions": list(conditions),
            "threads": list(threads),
            "sequences": list(sequences),
            "gpu_layers": list(gpu_layers),
            "kv_unified": kv_unified,
            "repeats": repeats,
            "naive": naive,
        },
        "baseline": {"threads": BASELINE[0], "sequences": BASELINE[1]},
        "cells": cells,
        "chosen_by_gpu_layers": chosen,
        "auto": {k: best_gpu[k] for k in ("threads", "sequences", "gpu_layers")},
    }
