"""The llama.cpp engine on tiny random-weight GGUFs, and its sampler and stop logic on their own."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from lite_align.engine import (
    GenerationRequest,
    GenerationResult,
    LlamaCppGenerator,
    SamplingParams,
    apply_repetition_penalty,
    draw_index,
    find_stop,
    sample_token,
)
from lite_align.errors import ConfigError, GenerationError, ModelFileError

REPO = Path(__file__).resolve().parents[1]
T1 = SamplingParams(temperature=1.0, repetition_penalty=1.1, max_tokens=24)


def by_key(results: Iterable[GenerationResult]) -> dict[tuple[object, int], GenerationResult]:
    return {(r.key, r.sample_index): r for r in results}


def texts(results: Iterable[GenerationResult]) -> dict[tuple[object, int], str]:
    return {k: r.text for k, r in by_key(results).items()}


def zero_shot(query: str) -> str:
    return f"# Query:\n```\n{query}\n```\n\n# Answer:\n```\n"


PREFIX = "# Instructions:\n\nAnswer the query well.\n\n" + zero_shot("is the answer yes") + "yes it is\n```\n\n"
QUERIES = ["the people think", "some can not", "because of the answer", "is it yes or no", "a query"]


def icl_requests(params: SamplingParams = T1, n: int = 3) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            key=("icl", i),
            prompt=PREFIX + zero_shot(q),
            seeds=tuple(100 * i + j for j in range(n)),
            params=params,
            prefix=PREFIX,
        )
        for i, q in enumerate(QUERIES)
    ]


# Flash attention off in the tests that compare texts across prefix sharing, batch composition
# and KV layouts: its tiled kernel's summation order follows the micro-batch's shape, so texts
# would differ for that reason alone; with it off they are exact on this f32 model, and any
# difference is a bookkeeping error of the engine.
EXACT = dict(flash_attn=False)


@pytest.fixture(scope="module", params=[False, True], ids=["streams", "unified"])
def gen(request: pytest.FixtureRequest, tiny_base_gguf: Path) -> Iterable[LlamaCppGenerator]:
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=1024, max_sequences=8, kv_unified=request.param, **EXACT) as g:
        yield g


@pytest.fixture(scope="module")
def chat_gen(tiny_chat_gguf: Path) -> Iterable[LlamaCppGenerator]:
    with LlamaCppGenerator(tiny_chat_gguf, n_ctx=512, max_sequences=4) as g:
        yield g


# -- sampler and stops, no model ---------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    row = np.array([3.0, -1.5, 0.0, 2.0], dtype=np.float32)
    apply_repetition_penalty(row, np.array([0, 1, 2]), 1.5)
    assert row.tolist() == pytest.approx([2.0, -2.25, 0.0, 2.0])


def test_greedy_takes_the_argmax_after_the_penalty() -> None:
    row = np.array([0.0, 5.0, 4.9, 1.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert sample_token(row.copy(), np.array([], dtype=np.int64), temperature=0.0, repetition_penalty=1.1, rng=rng) == 1
    # token 1 seen: 5.0 / 1.1 = 4.55 < 4.9
    assert sample_token(row.copy(), np.array([1]), temperature=0.0, repetition_penalty=1.1, rng=rng) == 2


def test_sampling_follows_the_tempered_softmax() -> None:
    logits = np.array([1.0, 0.5, -0.3, 2.0, 0.0, -2.0], dtype=np.float32)
    temperature = 0.7
    expected = np.exp(logits / temperature)
    expected /= expected.sum()
    rng = np.random.default_rng(42)
    draws = [
        sample_token(
            logits.copy(), np.array([], dtype=np.int64), temperature=temperature, repetition_penalty=1.0, rng=rng
        )
        for _ in range(20000)
    ]
    freq = np.bincount(draws, minlength=logits.size) / len(draws)
    assert np.abs(freq - expected).max() < 0.012


def test_draws_match_a_float64_full_softmax_with_the_same_uniform() -> None:
    """Block-wise float32 search, checked against the plain float64 inverse CDF."""
    vocab = 50_000 + 123  # not a multiple of the block size
    logits = np.random.default_rng(7)
    seen = np.array([3, 17, 400], dtype=np.int64)
    for temperature in (0.5, 1.0):
        for seed in range(300):
            row = (logits.standard_normal(vocab) * 4).astype(np.float32)
            ours = sample_token(
                row.copy(), seen, temperature=temperature, repetition_penalty=1.1, rng=np.random.default_rng(seed)
            )
            ref_row = row.astype(np.float64)
            ref_row[seen] = np.where(ref_row[seen] > 0, ref_row[seen] / 1.1, ref_row[seen] * 1.1)
            cumulative = np.cumsum(np.exp((ref_row - ref_row.max()) / temperature))
            u = np.random.default_rng(seed).random()
            assert ours == int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))


@pytest.mark.parametrize("u", [0.0, 0.25, 0.5, 0.999999999])
def test_draw_index_never_returns_a_zero_weight_token(u: float) -> None:
    weights = np.zeros(5000, dtype=np.float32)
    weights[[10, 1030, 4999]] = [1.0, 2.0, 1.0]
    assert draw_index(weights, u) == (10 if u < 0.25 else 1030 if u < 0.75 else 4999)


def test_find_stop_sees_a_stop_string_split_across_tokens() -> None:
    buf = bytearray()
    found = []
    for piece in [b"an answer`", b"`", b"` and more"]:
        start = len(buf)
        buf += piece
        found.append(find_stop(buf, [b"```"], start))
    assert found == [-1, -1, 9]


def test_find_stop_sees_a_multibyte_character_split_across_tokens() -> None:
    stop = "é".encode()
    buf = bytearray(b"caf" + stop[:1])
    assert find_stop(buf, [stop], 0) == -1
    start = len(buf)
    buf += stop[1:] + b"!"
    assert find_stop(buf, [stop], start) == 3
    assert bytes(buf[:3]).decode() == "caf"


def test_find_stop_returns_the_earliest_of_several_stops() -> None:
    assert find_stop(b"xx END yy ```", [b"```", b"END"], 0) == 3


def test_sampling_params_reject_nonsense() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ConfigError, match="max_tokens"):
        SamplingParams(max_tokens=0)
    with pytest.raises(ConfigError, match="stop"):
        SamplingParams(stop=("",))


# -- the engine on the tiny model -------------------------------------------------------------


def test_fork_sampling_gives_each_sample_its_own_text(gen: LlamaCppGenerator) -> None:
    req = GenerationRequest(key="q", prompt=zero_shot("is it yes"), seeds=(1, 2, 3, 4, 5), params=T1)
    results = sorted(gen.generate([req]), key=lambda r: r.sample_index)
    assert [r.sample_index for r in results] == [0, 1, 2, 3, 4]
    assert [r.seed for r in results] == [1, 2, 3, 4, 5]
    assert len({r.text for r in results}) >= 4
    n_prompt = len(gen.tokenize(req.prompt))
    assert all(r.prompt_tokens == n_prompt and r.key == "q" for r in results)


def test_same_seeds_same_text_and_other_seeds_other_text(gen: LlamaCppGenerator) -> None:
    reqs = icl_requests()
    first = texts(gen.generate(reqs))
    again = texts(gen.generate(reqs))
    assert first == again
    shifted = [dataclasses.replace(r, seeds=tuple(s + 7 for s in r.seeds)) for r in reqs]
    other = texts(gen.generate(shifted))
    assert sum(first[k] != other[k] for k in first) >= len(first) - 1


def test_same_seeds_same_text_in_a_fresh_process(gen: LlamaCppGenerator) -> None:
    reqs = icl_requests(n=2)[:2]
    here = texts(gen.generate(reqs))
    script = f"""
import json, sys
from lite_align.engine import LlamaCppGenerator, GenerationRequest, SamplingParams
reqs = [GenerationRequest(key=k, prompt=p, seeds=tuple(s), params=SamplingParams(**sp), prefix=x)
        for k, p, s, sp, x in json.loads(sys.stdin.read())]
g = LlamaCppGenerator({str(gen.model_path)!r}, n_ctx=1024, max_sequences=3, kv_unified={not gen.kv_unified},
                      flash_attn=False)
print(json.dumps([[r.key, r.sample_index, r.text] for r in g.generate(reqs)]))
"""
    rows = [[i, r.prompt, list(r.seeds), dataclasses.asdict(r.params), r.prefix] for i, r in enumerate(reqs)]
    payload = json.dumps(rows)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script], input=payload, capture_output=True, text=True, env=env, timeout=60, check=True
    )
    there = {(("icl", k), i): t for k, i, t in json.loads(proc.stdout)}
    assert there == here


def _decoded_tokens(gen: LlamaCppGenerator, requests: list[GenerationRequest]) -> tuple[dict, int]:
    gen.clear_cache()
    gen.trace = []
    try:
        out = texts(gen.generate(requests))
        return out, sum(op.tokens.size for op in gen.trace if op.kind == "decode" and op.tokens is not None)
    finally:
        gen.trace = None


def test_shared_prefix_changes_no_output(gen: LlamaCppGenerator) -> None:
    reqs = icl_requests()
    with_prefix, n_with = _decoded_tokens(gen, reqs)
    without, n_without = _decoded_tokens(gen, [dataclasses.replace(r, prefix="") for r in reqs])
    assert with_prefix == without
    # the prefix was read once instead of once per prompt
    n_prefix = len(gen.tokenize(PREFIX))
    assert n_without - n_with == (len(reqs) - 1) * n_prefix


def test_identical_prompts_admitted_together_are_read_once(gen: LlamaCppGenerator) -> None:
    # a sampled condition and its greedy twin: the same prompt text, other seeds and temperature
    sampled = icl_requests()
    greedy = [
        dataclasses.replace(r, key=("greedy", r.key[1]), seeds=(7,), params=dataclasses.replace(T1, temperature=0.0))
        for r in sampled
    ]
    paired = [r for pair in zip(sampled, greedy, strict=True) for r in pair]
    together, n_together = _decoded_tokens(gen, paired)
    sampled_apart, n_sampled = _decoded_tokens(gen, sampled)
    greedy_apart, n_greedy = _decoded_tokens(gen, greedy)
    assert together == {**sampled_apart, **greedy_apart}
    # decoded apart: both sets' prompts and answers; together: the greedy prompts were copied
    # (the same answers are decoded either way, the texts being equal)
    n_prefix = len(gen.tokenize(PREFIX))
    greedy_prompts = n_prefix + sum(len(gen.tokenize(r.prompt)) - n_prefix for r in greedy)
    assert n_sampled + n_greedy - n_together == greedy_prompts
    # one request asked for alone matches its text in the pair
    alone = texts(gen.generate([greedy[2]]))
    assert alone == {k: v for k, v in together.items() if k == (("greedy", 2), 0)}


def test_default_flash_attention_is_reproducible_in_a_fresh_process(tiny_base_gguf: Path) -> None:
    reqs = icl_requests(n=3)
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=1024, max_sequences=4) as g:
        here = texts(g.generate(reqs))
    script = f"""
import json, sys
from lite_align.engine import LlamaCppGenerator, GenerationRequest, SamplingParams
reqs = [GenerationRequest(key=k, prompt=p, seeds=tuple(s), params=SamplingParams(**sp), prefix=x)
        for k, p, s, sp, x in json.loads(sys.stdin.read())]
g = LlamaCppGenerator({str(tiny_base_gguf)!r}, n_ctx=1024, max_sequences=4)
print(json.dumps([[r.key, r.sample_index, r.text] for r in g.generate(reqs)]))
"""
    rows = [[i, r.prompt, list(r.seeds), dataclasses.asdict(r.params), r.prefix] for i, r in enumerate(reqs)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(rows), capture_output=True, text=True, env=env,
        timeout=60, check=True,
    )  # fmt: skip
    assert {(("icl", k), i): t for k, i, t in json.loads(proc.stdout)} == here


def test_prefix_that_splits_a_token_falls_back_to_the_common_tokens(gen: LlamaCppGenerator) -> None:
    # A prefix ending in a space: alone its last token is "▁"; in the prompt the space joins
    # the next word ("▁a"), so the prefix's tokens are not a prefix of the prompt's tokens.
    prefix = "# Query:\n```\nthe "
    prompt = zero_shot("the answer")
    reqs = [GenerationRequest(key=1, prompt=prompt, seeds=(3, 4), params=T1, prefix=prefix)]
    assert gen.tokenize(prefix) != gen.tokenize(prompt)[: len(gen.tokenize(prefix))]
    assert texts(gen.generate(reqs)) == texts(gen.generate([dataclasses.replace(reqs[0], prefix="")]))


def test_batching_across_prompts_changes_no_output(gen: LlamaCppGenerator) -> None:
    """Exact on this f32 model. On quantised models llama.cpp's logits depend slightly on what
    else is in the KV cache (float summation order), so texts may then diverge after a while."""
    reqs = icl_requests(n=3)
    together = texts(gen.generate(reqs))
    alone: dict[tuple[object, int], str] = {}
    for r in reqs:
        alone.update(texts(gen.generate([r])))
    assert together == alone


def test_more_samples_than_sequences_wait_for_a_slot(tiny_base_gguf: Path, gen: LlamaCppGenerator) -> None:
    req = GenerationRequest(key="many", prompt=zero_shot("a query"), seeds=tuple(range(7)), params=T1)
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=1024, max_sequences=2, kv_unified=gen.kv_unified, **EXACT) as small:
        few_slots = texts(small.generate([req, *icl_requests(n=2)]))
    assert texts(gen.generate([req, *icl_requests(n=2)])) == few_slots
    assert sorted(i for (k, i) in few_slots if k == "many") == list(range(7))


def test_stop_string_cuts_the_text_before_it(gen: LlamaCppGenerator) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=40)
    req = GenerationRequest(key="s", prompt=zero_shot("some people"), seeds=(11,), params=params)
    (full,) = gen.generate([req])
    # a two-character ASCII stop string that first occurs after a few characters
    stop = next(
        full.text[i : i + 2]
        for i in range(4, len(full.text) - 1)
        if full.text[i : i + 2].isascii() and full.text[i : i + 2].isalpha()
    )
    stopped_req = dataclasses.replace(req, params=dataclasses.replace(params, stop=(stop, "never-there")))
    (stopped,) = gen.generate([stopped_req])
    assert stopped.text == full.text[: full.text.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < full.completion_tokens or full.finish_reason == "stop"


def test_max_tokens_gives_finish_reason_length(gen: LlamaCppGenerator) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=6)
    results = list(gen.generate([GenerationRequest(key=0, prompt="the", seeds=tuple(range(8)), params=params)]))
    assert any(r.finish_reason == "length" for r in results)
    for r in results:
        assert (r.finish_reason, r.completion_tokens == 6) in {("length", True), ("stop", False)}


def test_end_of_generation_token_stops_a_sample(gen: LlamaCppGenerator) -> None:
    params = SamplingParams(temperature=1.5, repetition_penalty=1.0, max_tokens=64)
    reqs = [
        GenerationRequest(key=i, prompt=zero_shot(q), seeds=tuple(range(10 * i, 10 * i + 8)), params=params)
        for i, q in enumerate(QUERIES)
    ]
    results = list(gen.generate(reqs))
    stopped = [r for r in results if r.finish_reason == "stop"]
    assert stopped, "no sample drew </s> in 40 x 64 tokens at T=1.5"
    assert all(r.completion_tokens < 64 and "</s>" not in r.text for r in stopped)


def _oracle_greedy(model: Path, prompt_tokens: list[int], n: int, penalty: float) -> list[int]:
    """Greedy decoding with llama-cpp-python's high-level API and the HF penalty in numpy."""
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    tokens = list(prompt_tokens)
    out: list[int] = []
    llm.eval(tokens)
    for _ in range(n):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        seen = np.unique(tokens)
        row[seen] = np.where(row[seen] > 0, row[seen] / penalty, row[seen] * penalty)
        token = int(row.argmax())
        out.append(token)
        tokens.append(token)
        if llm.token_eos() == token:
            break
        llm.eval([token])
    llm.close()
    return out


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_equals_argmax_decoding(gen: LlamaCppGenerator, penalty: float) -> None:
    prompt = zero_shot("is the answer yes")
    params = SamplingParams(temperature=0.0, repetition_penalty=penalty, max_tokens=20)
    (result,) = gen.generate([GenerationRequest(key="g", prompt=prompt, seeds=(0,), params=params)])
    expected = _oracle_greedy(gen.model_path, gen.tokenize(prompt), 20, penalty)
    assert result.completion_tokens == len(expected)
    assert result.text == gen.detokenize([t for t in expected if not gen.is_eog(t)])


def test_prompt_too_long_names_the_key_and_the_sizes(tiny_base_gguf: Path) -> None:
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=64) as small:
        prompt = "the answer is no " * 40
        n = len(small.tokenize(prompt))
        req = GenerationRequest(key=("icl-knn", 17), prompt=prompt, seeds=(1,), params=T1)
        assert small.n_ctx == 256 < n  # llama.cpp pads n_ctx to 256
        with pytest.raises(GenerationError, match=rf"\('icl-knn', 17\).*{n} tokens.*holds 256"):
            list(small.generate([req]))
        # the generator is still usable afterwards
        ok = GenerationRequest(key="ok", prompt="yes", seeds=(1, 2), params=T1)
        assert len(list(small.generate([ok]))) == 2


def test_stopping_early_frees_the_sequences(gen: LlamaCppGenerator) -> None:
    reqs = icl_requests()
    reference = texts(gen.generate(reqs))
    stream = cast(Generator[GenerationResult, None, None], gen.generate(reqs))
    next(stream)
    stream.close()
    assert texts(gen.generate(reqs)) == reference


def test_prefix_cache_on_disk_is_reused(
    tiny_base_gguf: Path, tmp_path: Path, gen: LlamaCppGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the model's sha256 sidecar
    reqs = icl_requests(n=2)
    reference = texts(gen.generate([dataclasses.replace(r, prefix="") for r in reqs]))
    cache = tmp_path / "prefixes"
    decoded = []
    for _ in range(2):  # the first run writes the file, the second loads it
        with LlamaCppGenerator(
            tiny_base_gguf, n_ctx=1024, prefix_cache_dir=cache, kv_unified=gen.kv_unified, **EXACT
        ) as g:
            counts: list[int] = []
            real_decode = g._decode
            monkeypatch.setattr(g, "_decode", lambda n, real=real_decode, c=counts: (c.append(n), real(n))[1])
            assert texts(g.generate(reqs)) == reference
            decoded.append(sum(counts))
        assert len(list(cache.glob("prefix-*.kv"))) == 1
    assert decoded[0] - decoded[1] == len(gen.tokenize(PREFIX))  # loaded, not decoded
    assert (tmp_path / "xdg" / "lite_align" / "sha256.json").is_file()


def test_timings_add_up_to_the_work_done(tiny_base_gguf: Path) -> None:
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=1024) as g:
        assert g.timings == {"prompt": 0.0, "decode": 0.0, "sample": 0.0, "bookkeeping": 0.0}
        results = list(g.generate(icl_requests()))
        t = g.timings
    assert all(t[k] > 0 for k in ("prompt", "decode", "sample", "bookkeeping"))
    assert sum(r.seconds for r in results) == pytest.approx(sum(t.values()), rel=0.25)


def test_request_errors_are_one_line_and_name_the_request(gen: LlamaCppGenerator) -> None:
    with pytest.raises(GenerationError, match="'x'.*no seeds"):
        list(gen.generate([GenerationRequest(key="x", prompt="a", seeds=())]))
    with pytest.raises(GenerationError, match="'y'.*prefix"):
        list(gen.generate([GenerationRequest(key="y", prompt="abc", seeds=(1,), prefix="zz")]))


def test_a_truncated_model_is_refused_before_llama_cpp_sees_it(tiny_base_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_base_gguf.read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match="truncated"):
        LlamaCppGenerator(broken)


# -- tokenizer and chat template --------------------------------------------------------------


def test_tokenize_never_doubles_bos(gen: LlamaCppGenerator) -> None:
    plain = gen.tokenize("the answer")
    assert gen.tokenize("<s>the answer") == plain
    assert gen.tokenize("the answer", add_bos=False) == plain[1:]
    assert gen.detokenize(plain[1:]).strip() == "the answer"


def test_chat_template_renders_with_the_models_special_tokens(chat_gen: LlamaCppGenerator) -> None:
    assert chat_gen.chat_template() is not None
    text = chat_gen.render_chat([{"role": "user", "content": "is it yes?"}])
    assert text == "<s><|user|>\nis it yes?<|end|>\n<|assistant|>\n"
    tokens = chat_gen.tokenize(text)
    assert tokens.count(tokens[0]) == 1  # one BOS
    assert len(tokens) < len(text)  # <|user|> etc. are single control tokens
    no_prompt = chat_gen.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    assert not no_prompt.endswith("<|assistant|>\n")


def test_chat_model_stops_at_end_of_turn(chat_gen: LlamaCppGenerator) -> None:
    prompt = chat_gen.render_chat([{"role": "user", "content": "the answer"}])
    end = chat_gen.tokenize("<|end|>", add_bos=False)
    assert len(end) == 1 and chat_gen.is_eog(end[0])
    params = SamplingParams(temperature=1.5, repetition_penalty=1.0, max_tokens=48)
    results = list(chat_gen.generate([GenerationRequest(key=0, prompt=prompt, seeds=tuple(range(40)), params=params)]))
    assert all("<|end|>" not in r.text and "<|assistant|>" not in r.text for r in results)
    assert any(r.finish_reason == "stop" for r in results)


def test_base_model_has_no_chat_template(gen: LlamaCppGenerator) -> None:
    assert gen.chat_template() is None
    with pytest.raises(GenerationError, match="no chat template"):
        gen.render_chat([{"role": "user", "content": "hi"}])


def test_a_small_unified_cache_queues_samples_until_cells_free(tiny_base_gguf: Path) -> None:
    """256 shared cells hold the prompt and only a few 40-token samples at a time."""
    params = SamplingParams(temperature=1.0, max_tokens=40)
    reqs = [
        GenerationRequest(key=i, prompt=zero_shot(q), seeds=tuple(range(5)), params=params)
        for i, q in enumerate(QUERIES)
    ]
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=1024, kv_unified=True, **EXACT) as roomy:
        expected = texts(roomy.generate(reqs))
    with LlamaCppGenerator(tiny_base_gguf, n_ctx=256, kv_unified=True, **EXACT) as tight:
        tight.trace = []
        assert texts(tight.generate(reqs)) == expected
        widest = max(
            op.tokens.size
            for op in tight.trace
            if op.kind == "decode" and op.tokens is not None and op.logits is not None and op.logits.all()
        )
    assert widest <= (256 - 20) // 40 < 8  # never more samples at once than the cells allow


def test_bench_reports_all_three_speeds(tiny_base_gguf: Path) -> None:
    from lite_align.bench import bench_requests, icl_prefix, run_bench

    reqs = bench_requests("icl-static", 3, 2, 8)
    assert all(r.prompt.startswith(icl_prefix()) and r.prefix == icl_prefix() for r in reqs)
    assert len({s for r in reqs for s in r.seeds}) == 6
    out = run_bench(tiny_base_gguf, n_prompts=3, n_samples=2, max_tokens=8, max_sequences=4, n_ctx=8192)
    assert set(out["conditions"]) == {"icl-static", "zero-shot"}
    for row in out["conditions"].values():
        assert row["samples"] == 6
        assert 0 < row["engine_tokens"] <= 6 * 8
        for key in ("naive_tokens_per_s", "engine_tokens_per_s", "limit_tokens_per_s"):
            assert row[key] > 0
        assert row["share_of_limit"] == pytest.approx(row["engine_tokens_per_s"] / row["limit_tokens_per_s"])
        assert row["speedup_vs_naive"] == pytest.approx(row["engine_tokens_per_s"] / row["naive_tokens_per_s"])
        assert set(row["engine_split_seconds"]) == {"prompt", "decode", "sample", "bookkeeping"}


def test_more_prefixes_than_cache_slots_change_no_output(gen: LlamaCppGenerator) -> None:
    """Three different prefixes take turns in the two prefix slots."""
    prefixes = [f"# Instructions:\n\n{word} the query.\n\n" for word in ("Answer", "Think about", "Read")]
    reqs = [
        GenerationRequest(key=(p, q), prompt=p + zero_shot(q), seeds=(5, 6), params=T1, prefix=p)
        for q in QUERIES[:3]
        for p in prefixes
    ]
    assert texts(gen.generate(reqs)) == texts(gen.generate([dataclasses.replace(r, prefix="") for r in reqs]))


# -- grammars -----------------------------------------------------------------------------------


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


def test_a_grammar_constrains_every_sample(gen: LlamaCppGenerator) -> None:
    params = SamplingParams(
        temperature=1.5, repetition_penalty=1.0, max_tokens=16, grammar='root ::= ("yes" | "no") "."'
    )
    reqs = [
        GenerationRequest(key=i, prompt=zero_shot(q), seeds=tuple(range(8)), params=params)
        for i, q in enumerate(QUERIES)
    ]
    results = list(gen.generate(reqs))
    assert len(results) == 40
    assert {r.text for r in results} == {"yes.", "no."}  # random weights at T=1.5 pick both
    assert all(r.finish_reason == "stop" for r in results)  # end of generation once the grammar is complete


def test_a_grammar_the_model_follows_anyway_changes_nothing(gen: LlamaCppGenerator) -> None:
    """Greedy text without a grammar, then with a grammar that allows exactly that start and
    anything after it: the same tokens (the grammar only acts on tokens it rejects)."""
    free_params = SamplingParams(temperature=0.0, repetition_penalty=1.1, max_tokens=12)
    prompt = zero_shot("is the answer yes")  # its greedy text is whole characters (most are stray bytes)
    (free,) = gen.generate([GenerationRequest(key="free", prompt=prompt, seeds=(0,), params=free_params)])
    assert free.text and "\ufffd" not in free.text
    grammar = f"root ::= {_gbnf_literal(free.text)} rest\nrest ::= [^\\x00]*"
    bound = dataclasses.replace(free_params, grammar=grammar)
    (constrained,) = gen.generate([GenerationRequest(key="g", prompt=prompt, seeds=(0,), params=bound)])
    assert (constrained.text, constrained.completion_tokens) == (free.text, free.completion_tokens)


def test_grammar_sampling_is_reproducible_and_leaves_other_requests_alone(gen: LlamaCppGenerator) -> None:
    constrained = SamplingParams(temperature=1.0, max_tokens=10, grammar="root ::= [a-z ]+")
    free = [
        GenerationRequest(key=("free", i), prompt=zero_shot(q), seeds=(7, 8), params=T1) for i, q in enumerate(QUERIES)
    ]
    bound = [
        GenerationRequest(key=("g", i), prompt=zero_shot(q), seeds=(7, 8), params=constrained)
        for i, q in enumerate(QUERIES)
    ]
    alone = texts(gen.generate(free))
    mixed = texts(gen.generate([x for pair in zip(free, bound, strict=True) for x in pair]))
    again = texts(gen.generate(bound))
    assert {k: v for k, v in mixed.items() if k[0][0] == "free"} == alone
    assert {k: v for k, v in mixed.items() if k[0][0] == "g"} == again
    assert all(v and set(v) <= set("abcdefghijklmnopqrstuvwxyz ") for v in again.values())


def test_a_grammar_that_does_not_parse_is_refused_with_the_request_key(gen: LlamaCppGenerator) -> None:
    bad = GenerationRequest(
        key="judge-7", prompt="the", seeds=(0,), params=SamplingParams(grammar="root ::= undefined-rule")
    )
    with pytest.raises(GenerationError, match="'judge-7'.*grammar does not parse"):
        gen.check(bad)
    with pytest.raises(GenerationError, match="grammar does not parse"):
        list(gen.generate([bad]))
    ok = GenerationRequest(key="ok", prompt="the", seeds=(0,), params=SamplingParams(max_tokens=3))
    assert len(list(gen.generate([ok]))) == 1  # the generator is still usable
    with pytest.raises(ConfigError, match="grammar"):
        SamplingParams(grammar="  ")
