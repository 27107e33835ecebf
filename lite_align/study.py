"""The study: which conditions run, in which order, from prompts to samples in the store.

Order of work (docs/method.md §4, issue 4): the teacher's samples first (they are the in-context
examples and the reference), the teacher's answers to the static example queries, then the
summaries (of those answers and of every prompt's teacher sample 0), then every base-model
condition in one batched pass. Everything is appended to the run store as it finishes, so a
rerun of the same command generates only what is missing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from . import prompts as fmt
from .conditions import GREEDY_SUFFIX, TEACHER, is_greedy, is_teacher, sampled_twin
from .conditions import condition as lookup_condition
from .data import ModelRef, PromptSet, Sample
from .engine import raise_if_interrupted
from .errors import GenerationError
from .generation.base import GenerationRequest, Generator, SamplingParams
from .prompts import Example, PromptTexts
from .store import RunStore

# --- what the study needs from a generator: lite_align.generation.Generator, any backend ------


class Progress(Protocol):
    def start(self, description: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class StudySettings:
    preset: str
    samples: int
    max_tokens: int
    temperature: float
    repetition_penalty: float
    seed: int
    k: int
    conditions: tuple[str, ...]
    summary_max_tokens: int = 128
    ctx: int | None = None  # every model's context (prompt + answer, tokens); None: sized to the prompts


@dataclass(frozen=True)
class StudyPlan:
    settings: StudySettings
    prompt_set: PromptSet
    texts: PromptTexts
    base: ModelRef
    chat: ModelRef
    summarizer: ModelRef  # the teacher unless --summarizer names another model


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Linux's ``VmHWM`` is the high-water mark of this program's own memory. ``getrusage`` is only
    the fallback: Linux carries ``ru_maxrss`` over from the parent across fork and exec, so a run
    started by a large process (a test runner holding 2 GB) would report the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def derive_seed(run_seed: int, *parts: object) -> int:
    """A sample's own seed from (run seed, prompt id, sample index), stable across processes.

    >>> derive_seed(0, 3, 1) == derive_seed(0, 3, 1) != derive_seed(0, 3, 2)
    True
    """
    key = ":".join(str(p) for p in (run_seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little") & 0x7FFFFFFF


PREFLIGHT = "preflight"
PREFLIGHT_TOKENS = 16


class RequestKey(NamedTuple):
    """The key of a request the study sends: the file its samples go to, the prompt, the sample
    indices still missing, the condition and the model's name. Its repr is what a user reads when
    the engine refuses a request ("request (icl-knn, prompt 3): ...")."""

    path: str
    prompt_id: int
    indices: tuple[int, ...]
    condition: str
    model: str

    def __repr__(self) -> str:
        return f"({self.condition}, prompt {self.prompt_id})"


class PreflightKey(tuple[str]):
    """The sampling preflight's key, ``("preflight",)``, which reads as words in an error message."""

    prompt_id: int

    def __new__(cls, prompt_id: int) -> PreflightKey:
        key = super().__new__(cls, (PREFLIGHT,))
        key.prompt_id = prompt_id
        return key

    def __repr__(self) -> str:
        return f"(the sampling preflight, prompt {self.prompt_id})"


# per prompt id: the in-context examples, the query and the summary hint (None: the condition has none)
BaseInputs = dict[int, tuple[list[Example], str, str | None]]

OpenGenerator = Callable[..., Generator]  # (ModelRef, *, n_ctx: int | None) -> Generator

# Characters a chat template adds around one user message (role markers, special tokens).
CHAT_TEMPLATE_CHARS = 200


def context_for(prompt_chars: int, max_tokens: int) -> int:
    """The context one sequence needs: its longest prompt and its answer budget, estimated from
    characters (English runs ~4 characters a token; 3 leaves room), rounded up to 256 cells.
    KV memory grows with it, so a quick run does not reserve the paper's 4k-token windows; a
    prompt the estimate undersizes is fitted by ``Study._fits`` (examples dropped, recorded)."""
    need = prompt_chars // 3 + max_tokens + 16
    return max(256, -(-need // 256) * 256)


@dataclass(frozen=True)
class PendingWork:
    """One request the study would send: a rendered prompt and the samples it still needs.

    ``prefix`` is the part of ``prompt`` shared by every prompt of its condition (read once);
    ``estimated_tokens`` is a guess of the tokens the prompt will gain from answers and summaries
    that are not generated yet (see :meth:`Study.pending`)."""

    phase: str  # "teacher", "summary" or "base"
    model: ModelRef
    condition: str
    prompt_id: int
    samples: int
    prompt: str
    max_tokens: int
    prefix: str = ""
    estimated_tokens: int = 0

    @classmethod
    def of(cls, phase: str, model: ModelRef, request: Any, estimated_tokens: int = 0) -> PendingWork:
        _, pid, _, condition, _ = request.key
        return cls(
            phase,
            model,
            condition,
            pid,
            len(request.seeds),
            request.prompt,
            request.params.max_tokens,
            request.prefix,
            estimated_tokens,
        )


class _LazyRendered(Mapping[int, str]):
    """``{key: render(source[key])}``, each value rendered on first access."""

    def __init__(self, source: Mapping[int, Any], render: Callable[[Any], str]) -> None:
        self._source = source
        self._render = render
        self._done: dict[int, str] = {}

    def __getitem__(self, key: int) -> str:
        if key not in self._done:
            self._done[key] = self._render(self._source[key])
        return self._done[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


def _rendered(source: Mapping[int, Any], render: Callable[[Any], str], lazy: bool) -> Mapping[int, str]:
    return _LazyRendered(source, render) if lazy else {k: render(v) for k, v in source.items()}


def _params(temperature: float, settings: StudySettings, max_tokens: int, stop: tuple[str, ...]) -> Any:

    return SamplingParams(
        temperature=temperature, repetition_penalty=settings.repetition_penalty, max_tokens=max_tokens, stop=stop
    )


def twins_together(requests: Sequence[Any]) -> list[Any]:
    """``requests`` (keys: :class:`RequestKey`) reordered so that a prompt's request in a greedy
    condition directly follows its sampled twin's: the two prompts are the same text, and the
    engine reads a prompt once for requests admitted together (the other gets a copy). Otherwise
    the order is kept: conditions in their first order, prompts by id within them.

    >>> req = lambda c, p: _request(RequestKey("", p, (0,), c, "m"), "text", [0], None)
    >>> out = twins_together([req("base", 0), req("base", 1), req("base-greedy", 0)])
    >>> [(r.key.condition, r.key.prompt_id) for r in out]
    [('base', 0), ('base-greedy', 0), ('base', 1)]
    """
    groups: dict[str, int] = {}
    for r in requests:
        groups.setdefault(sampled_twin(r.key.condition), len(groups))

    def place(r: Any) -> tuple[int, int, bool]:
        return groups[sampled_twin(r.key.condition)], r.key.prompt_id, is_greedy(r.key.condition)

    return sorted(requests, key=place)


def _request(key: Any, prompt: str, seeds: Sequence[int], params: Any, prefix: str = "") -> Any:

    return GenerationRequest(key=key, prompt=prompt, seeds=tuple(seeds), params=params, prefix=prefix)


class Study:
    """Runs a :class:`StudyPlan` into a :class:`RunStore`."""

    def __init__(
        self,
        plan: StudyPlan,
        store: RunStore,
        open_generator: OpenGenerator,
        progress: Progress | None = None,
        embed_prompts: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.plan = plan
        self.s = plan.settings
        self.store = store
        self.open_generator = open_generator
        self.progress = progress or NoProgress()
        self.embed_prompts = embed_prompts
        self.timings: dict[str, float] = {}
        self.engine_timings: dict[str, dict[str, float]] = {}
        self.engine_phases: dict[str, dict[str, int]] = {}  # phase key -> cells and live sequences
        self.skipped: list[dict[str, Any]] = []
        self.dropped_examples: dict[str, int] = {}
        self.peak_rss_mb: dict[str, float] = {}  # the process's peak so far, after each phase
        self.generated = 0

    # --- bookkeeping ---------------------------------------------------------------------
    def _missing(self, path: Path, prompt_ids: Sequence[int], n: int) -> dict[int, list[int]]:
        done = self.store.done_keys(path)
        out = {}
        for pid in prompt_ids:
            idx = [j for j in range(n) if (pid, j) not in done]
            if idx:
                out[pid] = idx
        return out

    def _run(self, gen: Generator, path: Path, condition: str, model: str, requests: list[Any], label: str) -> None:
        """Generate ``requests`` (keys: (path, prompt_id, sample indices)) and append each result."""
        total = sum(len(r.seeds) for r in requests)
        if total == 0:
            return
        self.progress.start(label, total)
        for res in gen.generate(requests):
            key: Any = res.key  # the tuple _requests_for made
            _, pid, indices, cond, mdl = key
            sample = Sample(
                prompt_id=pid,
                condition=cond,
                model=mdl,
                sample_index=indices[res.sample_index],
                seed=res.seed,
                text=res.text,
                completion_tokens=res.completion_tokens,
                finish_reason=res.finish_reason,
                seconds=res.seconds,
                prompt_tokens=res.prompt_tokens,
            )
            self.store.append(Path(key[0]), sample)
            raise_if_interrupted()  # a Ctrl-C deferred by llama.cpp's log callback stops here, sample saved
            self.generated += 1
            self.progress.advance()
        self.progress.finish()

    def _requests_for(
        self,
        path: Path,
        condition: str,
        model: str,
        prompts: Mapping[int, str],
        n: int,
        temperature: float,
        max_tokens: int,
        stop: tuple[str, ...],
        prefix: str = "",
        seed_tag: str = "",
        fits: Callable[[str], bool] | None = None,
    ) -> list[Any]:
        params = _params(temperature, self.s, max_tokens, stop)
        reqs = []
        for pid, idx in self._missing(path, sorted(prompts), n).items():
            if fits is not None and not fits(prompts[pid]):
                self.skipped.append(
                    {"condition": condition, "prompt_id": pid, "reason": "prompt longer than the model's context"}
                )
                continue
            seeds = [derive_seed(self.s.seed, *([seed_tag] if seed_tag else []), pid, j) for j in idx]
            key = RequestKey(str(path), pid, tuple(idx), condition, model)
            text = prompts[pid]
            reqs.append(_request(key, text, seeds, params, prefix if text.startswith(prefix) else ""))
        return reqs

    # --- phases --------------------------------------------------------------------------
    def run(self) -> None:
        conds = self.s.conditions
        t0 = time.perf_counter()
        self._teacher_phase(conds)
        self.timings["teacher_s"] = time.perf_counter() - t0
        self.peak_rss_mb["after_teacher"] = peak_rss_mb()
        base_conds = [c for c in conds if not is_teacher(c)]
        if base_conds:
            t1 = time.perf_counter()
            self._base_phase(base_conds)
            self.timings["base_s"] = time.perf_counter() - t1
            self.peak_rss_mb["after_base"] = peak_rss_mb()

    def _teacher_phase(self, conds: Sequence[str]) -> None:
        plan, s = self.plan, self.s
        needs_summary = any(lookup_condition(c).needs_summaries for c in conds)
        chat_name = plan.chat.name
        n_ctx = context_for(self._longest_query() + CHAT_TEMPLATE_CHARS, s.max_tokens)
        if needs_summary and plan.summarizer.path == plan.chat.path:  # the teacher summarises too
            n_ctx = max(n_ctx, self._summary_context())
        gen = self.open_generator(plan.chat, n_ctx=s.ctx or n_ctx)
        try:

            def chat_prompt(text: str) -> str:
                return gen.render_chat([{"role": "user", "content": text}])

            queries = [*plan.prompt_set.texts(), *plan.texts.static_queries]
            gen = self._sized(plan.chat, gen, [chat_prompt(q) for q in queries], s.max_tokens)
            reqs = self._teacher_requests(conds, chat_prompt, self._fits(gen, s.max_tokens, s.ctx))
            self._run(gen, Path(), TEACHER, chat_name, reqs, f"teacher {chat_name}")
            self._record_engine(f"teacher:{chat_name}", gen)
        finally:
            if not needs_summary or plan.summarizer.path != plan.chat.path:
                gen.close()
        if needs_summary:
            self._summary_phase(gen if plan.summarizer.path == plan.chat.path else None)

    def _teacher_requests(
        self,
        conds: Sequence[str],
        chat_prompt: Callable[[str], str],
        fits: Callable[[str], bool] | None,
        *,
        lazy: bool = False,
    ) -> list[Any]:
        """The teacher's missing samples (sampled, greedy) and static answers, as requests.
        ``lazy``: render a prompt only when a request needs it (the plan of a resumed run)."""
        plan, s = self.plan, self.s
        prompts = {p.id: p.text for p in plan.prompt_set.prompts}
        needs_static = any(lookup_condition(c).needs_static_answers for c in conds)
        chat_name = plan.chat.name
        rendered = _rendered(prompts, chat_prompt, lazy)
        reqs = self._requests_for(
            self.store.samples_path(TEACHER),
            TEACHER,
            chat_name,
            rendered,
            s.samples,
            s.temperature,
            s.max_tokens,
            (),
            fits=fits,
        )
        if TEACHER + GREEDY_SUFFIX in conds:
            reqs += self._requests_for(
                self.store.samples_path(TEACHER + GREEDY_SUFFIX),
                TEACHER + GREEDY_SUFFIX,
                chat_name,
                rendered,
                1,
                0.0,
                s.max_tokens,
                (),
                fits=fits,
            )
        if needs_static:
            statics = _rendered(dict(enumerate(plan.texts.static_queries)), chat_prompt, lazy)
            reqs += self._requests_for(
                self.store.aux_path("teacher-static"),
                "teacher-static",
                chat_name,
                statics,
                1,
                s.temperature,
                s.max_tokens,
                (),
                seed_tag="static",
                fits=fits,
            )
        return twins_together(reqs)

    def _longest_query(self) -> int:
        return max(len(t) for t in [*self.plan.prompt_set.texts(), *self.plan.texts.static_queries])

    def _summary_context(self) -> int:
        """A summary request holds the query, a teacher answer (at most max_tokens tokens, ~4.5
        characters each) and the summariser's instruction."""
        chars = self._longest_query() + int(self.s.max_tokens * 4.5) + len(self.plan.texts.summarize)
        return context_for(chars + CHAT_TEMPLATE_CHARS, self.s.summary_max_tokens)

    def _summary_phase(self, teacher_gen: Generator | None) -> None:
        plan, s = self.plan, self.s
        gen = teacher_gen or self.open_generator(plan.summarizer, n_ctx=self.s.ctx or self._summary_context())
        try:
            tmpl = plan.texts.summarize

            def req_text(query: str, answer: str) -> str:
                return gen.render_chat([{"role": "user", "content": fmt.summarize_request(tmpl, query, answer)}])

            teacher0, statics = self.teacher_answers(), self.static_answers()
            queries = {**{p.id: p.text for p in plan.prompt_set.prompts}}
            texts = [req_text(queries[pid], a) for pid, a in teacher0.items()]
            texts += [req_text(plan.texts.static_queries[k], a) for k, a in statics.items()]
            gen = self._sized(plan.summarizer, gen, texts, s.summary_max_tokens)
            fits = self._fits(gen, s.summary_max_tokens, s.ctx)
            reqs = self._summary_requests(req_text, fits, teacher0, statics)
            self._run(gen, Path(), "summary", plan.summarizer.name, reqs, f"summaries {plan.summarizer.name}")
            self._record_engine(f"summarizer:{plan.summarizer.name}", gen)
        finally:
            gen.close()

    def _summary_requests(
        self,
        req_text: Callable[[str, str], str],
        fits: Callable[[str], bool] | None,
        teacher0: Mapping[int, str],
        statics: Mapping[int, str],
        *,
        lazy: bool = False,
    ) -> list[Any]:
        """The missing summaries of the teacher's answers ``teacher0`` (per prompt) and ``statics``
        (per static example query), as requests."""
        plan, s = self.plan, self.s
        prompts = {p.id: p.text for p in plan.prompt_set.prompts}
        todo = _rendered({pid: (prompts[pid], a) for pid, a in teacher0.items()}, lambda qa: req_text(*qa), lazy)
        static_todo = _rendered(
            {k: (plan.texts.static_queries[k], a) for k, a in statics.items()}, lambda qa: req_text(*qa), lazy
        )
        reqs = self._requests_for(
            self.store.aux_path("summary"),
            "summary",
            plan.summarizer.name,
            todo,
            1,
            0.0,
            s.summary_max_tokens,
            (),
            fits=fits,
        )
        reqs += self._requests_for(
            self.store.aux_path("summary-static"),
            "summary-static",
            plan.summarizer.name,
            static_todo,
            1,
            0.0,
            s.summary_max_tokens,
            (),
            fits=fits,
        )
        return reqs

    # --- what the teacher produced ---------------------------------------------------------
    def teacher_answers(self) -> dict[int, str]:
        """Sample 0 of the teacher for every prompt (the in-context answers and the reference)."""
        return {x.prompt_id: x.text for x in self.store.samples(TEACHER) if x.sample_index == 0}

    def static_answers(self) -> dict[int, str]:
        return {x.prompt_id: x.text for x in self.store.aux("teacher-static")}

    def summaries(self) -> tuple[dict[int, str], dict[int, str]]:
        own = {x.prompt_id: x.text for x in self.store.aux("summary")}
        static = {x.prompt_id: x.text for x in self.store.aux("summary-static")}
        return own, static

    # --- the base model's prompts ----------------------------------------------------------
    def base_inputs(self, condition: str) -> BaseInputs:
        """Per prompt id: the in-context examples (in prompt order), the query and the summary hint
        (None when the condition has none) of one base condition (sampled or greedy)."""
        plan, s = self.plan, self.s
        cond = lookup_condition(condition)
        prompts = {p.id: p.text for p in plan.prompt_set.prompts}
        own_sum, static_sum = self.summaries() if cond.needs_summaries else ({}, {})

        def hint(summaries: Mapping[int, str], key: int) -> str | None:
            return summaries.get(key, "") if cond.needs_summaries else None

        if cond.examples == "none":
            return {pid: ([], t, hint(own_sum, pid)) for pid, t in prompts.items()}
        if cond.examples == "static":
            statics = self.static_answers()
            examples = [
                Example(q, statics.get(k, ""), hint(static_sum, k))
                for k, q in enumerate(plan.texts.static_queries[: s.k])
            ]
            return {pid: (examples, t, hint(own_sum, pid)) for pid, t in prompts.items()}
        teacher0 = self.teacher_answers()
        n = len(prompts)
        vectors: Any = None
        if cond.needs_embedder:
            if self.embed_prompts is None:
                raise GenerationError(f"{cond.sampled} needs the sentence embedder; install it with ./install.sh")
            vectors = self.embed_prompts([prompts[i] for i in range(n)])
        out: BaseInputs = {}
        for pid, t in prompts.items():
            ids = (
                fmt.random_neighbours(n, pid, s.k, s.seed)
                if cond.examples == "random"
                else fmt.knn_neighbours(vectors, pid, s.k)
            )
            out[pid] = (
                [Example(prompts[i], teacher0.get(i, ""), hint(own_sum, i)) for i in ids],
                t,
                hint(own_sum, pid),
            )
        return out

    def render_base(self, condition: str, examples: Sequence[Example], query: str, summary: str | None) -> str:
        if lookup_condition(condition).prompt_format == "zero-shot":
            return fmt.zero_shot(query)
        return fmt.in_context(self.plan.texts.system, examples, query, summary)

    def base_prompts(
        self, condition: str, fits: Callable[[str], bool] | None = None, inputs: BaseInputs | None = None
    ) -> dict[int, str]:
        """The rendered prompt of every prompt id for one base condition.

        With ``fits`` (does this prompt leave room for the answer in the model's context?), a prompt
        that does not fit loses in-context examples from the end (the least similar, for knn) until
        it does; a prompt that does not fit even without examples is left out and recorded in
        ``self.skipped``. Dropped examples are counted in ``self.dropped_examples``. ``inputs``:
        the condition's ``base_inputs`` when the caller already has them."""
        out: dict[int, str] = {}
        for pid, (examples, query, summary) in (inputs or self.base_inputs(condition)).items():
            kept = list(examples)
            text = self.render_base(condition, kept, query, summary)
            while fits is not None and not fits(text) and kept:
                kept.pop()
                text = self.render_base(condition, kept, query, summary)
            if fits is not None and not fits(text):
                self.skipped.append(
                    {
                        "condition": condition,
                        "prompt_id": pid,
                        "reason": "prompt longer than the base model's context, even without examples",
                    }
                )
                continue
            if len(kept) < len(examples):
                self.dropped_examples[condition] = self.dropped_examples.get(condition, 0) + len(examples) - len(kept)
            out[pid] = text
        return out

    def _sized(self, ref: ModelRef, gen: Generator, texts: Sequence[str], budget: int) -> Generator:
        """``gen``, or ``gen`` reopened with the context the prompts' real token counts need: larger
        when the character estimate was short (a byte-level tokenizer, say), up to the model's
        training context (prompts still too long are fitted or skipped by ``_fits``), and smaller
        when it was long by 256 cells or more, since every live sequence holds a full context and
        a smaller one lets more sequences fit the memory budget. A context the user set (``--ctx``)
        is kept as it is."""
        limit = getattr(gen, "max_positions", None)
        if not limit or not texts or self.s.ctx:
            return gen
        need = max(len(gen.tokenize(t)) for t in set(texts)) + budget
        train = getattr(gen, "n_ctx_train", 0)
        if train:
            need = min(need, train)
        cells = -(-need // 256) * 256
        if need <= limit and cells + 256 > limit:
            return gen
        gen.close()
        return self.open_generator(ref, n_ctx=cells)

    @staticmethod
    def _fits(gen: Generator, budget: int, ctx: int | None = None) -> Callable[[str], bool] | None:
        """A context check for ``gen``: prompt tokens + the answer budget within its context, or
        within ``ctx`` (--ctx) when that is smaller (llama.cpp pads contexts to 256 cells); None
        for generators that do not say their context, such as servers."""
        limit = getattr(gen, "max_positions", None)
        if not limit:
            return None
        if ctx:
            limit = min(limit, ctx)

        def fits(text: str) -> bool:
            return len(gen.tokenize(text)) + budget <= limit

        return fits

    def _base_phase(self, conds: Sequence[str]) -> None:
        plan, s = self.plan, self.s
        # a greedy twin has its sampled condition's prompts: examples are chosen (knn embeds every
        # prompt) and the teacher's texts read once per sampled condition
        inputs = {kind: self.base_inputs(kind) for kind in dict.fromkeys(sampled_twin(c) for c in conds)}
        full = [self.render_base(kind, *i) for kind, by_id in inputs.items() for i in by_id.values()]
        gen = self.open_generator(plan.base, n_ctx=s.ctx or context_for(max(map(len, full)), s.max_tokens))
        try:
            gen = self._sized(plan.base, gen, full, s.max_tokens)
            self._preflight(gen)
            reqs = self._base_requests(conds, self._fits(gen, s.max_tokens, s.ctx), inputs)
            self._run(gen, Path(), "base", plan.base.name, reqs, f"base {plan.base.name}")
            self._record_engine(f"base:{plan.base.name}", gen)
        finally:
            gen.close()

    def _base_requests(
        self,
        conds: Sequence[str],
        fits: Callable[[str], bool] | None,
        inputs: Mapping[str, BaseInputs] | None = None,
    ) -> list[Any]:
        """Every base condition's missing samples, as requests (the shared prompt part as prefix).
        ``inputs``: ``base_inputs`` by sampled condition, when already computed."""
        plan, s = self.plan, self.s
        reqs: list[Any] = []
        for cond in conds:
            rendered = self.base_prompts(cond, fits, (inputs or {}).get(sampled_twin(cond)))
            prefix = fmt.shared_prefix(list(rendered.values())) if len(rendered) > 1 else ""
            greedy = is_greedy(cond)
            reqs += self._requests_for(
                self.store.samples_path(cond),
                cond,
                plan.base.name,
                rendered,
                1 if greedy else s.samples,
                0.0 if greedy else s.temperature,
                s.max_tokens,
                (fmt.FENCE,),
                prefix=prefix,
            )
        return twins_together(reqs)

    def _preflight(self, gen: Generator) -> None:
        """A few short samples at the run's temperature: identical samples mean a broken sampler
        or seed, which would fake a diversity loss. Nothing is stored. It asks the first prompt
        whose zero-shot form fits the context with its 16 tokens; with none, it is left out (every
        base prompt is then skipped, and recorded as such)."""
        s = self.s
        if s.temperature <= 0 or s.samples < 2:
            return
        fits = self._fits(gen, PREFLIGHT_TOKENS, s.ctx)
        first = next(
            (p for p in self.plan.prompt_set.prompts if fits is None or fits(fmt.zero_shot(p.text))),
            None,
        )
        if first is None:
            return
        params = _params(s.temperature, s, PREFLIGHT_TOKENS, (fmt.FENCE,))
        seeds = [derive_seed(s.seed, "preflight", j) for j in range(4)]
        key = PreflightKey(first.id)
        texts = [r.text for r in gen.generate([_request(key, fmt.zero_shot(first.text), seeds, params)])]
        if len(texts) == 4 and len(set(texts)) == 1:
            raise GenerationError(
                f"sampling preflight: 4 samples at temperature {s.temperature} with different seeds gave the same "
                f"text ({texts[0][:40]!r}); the sampler or seeding is broken, so a diversity comparison would be fake"
            )

    # --- the work still to do, without generating (lite_align.plan) ------------------------
    def pending(self, render_chat: Callable[[ModelRef, list[dict[str, str]]], str]) -> list[PendingWork]:
        """Every request :meth:`run` would send now, in its order, without generating anything:
        what is already in the store is left out (a resumed run lists only what is missing).

        ``render_chat(model, messages)`` renders a chat prompt with that model's template; it is
        called only for prompts still to generate. Prompts that embed answers not generated yet
        (the teacher's answers and summaries inside in-context prompts, the answer a summary
        request quotes) are rendered with those answers empty, and ``estimated_tokens`` holds a
        guess of their length: ``max_tokens`` per answer, ``summary_max_tokens`` per summary.
        No context check is made (nothing is skipped or shortened here)."""
        plan, s = self.plan, self.s
        conds = s.conditions
        out: list[PendingWork] = []

        def chat_prompt(text: str) -> str:
            return render_chat(plan.chat, [{"role": "user", "content": text}])

        for req in self._teacher_requests(conds, chat_prompt, None, lazy=True):
            out.append(PendingWork.of("teacher", plan.chat, req))
        if any(lookup_condition(c).needs_summaries for c in conds):
            tmpl = plan.texts.summarize
            teacher0, statics = self.teacher_answers(), self.static_answers()
            all0 = {p.id: teacher0.get(p.id, "") for p in plan.prompt_set.prompts}
            all_static = {k: statics.get(k, "") for k in range(len(plan.texts.static_queries))}

            def req_text(query: str, answer: str) -> str:
                return render_chat(
                    plan.summarizer, [{"role": "user", "content": fmt.summarize_request(tmpl, query, answer)}]
                )

            for req in self._summary_requests(req_text, None, all0, all_static, lazy=True):
                answers = all_static if req.key[3] == "summary-static" else all0
                guess = 0 if answers.get(req.key[1]) else s.max_tokens
                out.append(PendingWork.of("summary", plan.summarizer, req, guess))
        base_conds = [c for c in conds if not is_teacher(c)]
        if base_conds:
            guesses = {cond: self._answer_guesses(cond) for cond in base_conds}
            for req in self._base_requests(base_conds, None):
                out.append(PendingWork.of("base", plan.base, req, guesses[req.key[3]].get(req.key[1], 0)))
        return out

    def _answer_guesses(self, condition: str) -> dict[int, int]:
        """Per prompt id: estimated tokens of the answers and summaries its prompt will hold but
        that are not generated yet (0 when everything is there)."""
        s = self.s
        out: dict[int, int] = {}
        for pid, (examples, _, summary) in self.base_inputs(condition).items():
            missing = sum(s.max_tokens for ex in examples if not ex.answer)
            missing += sum(s.summary_max_tokens for ex in examples if ex.summary is not None and not ex.summary)
            if summary is not None and not summary:
                missing += s.summary_max_tokens
            out[pid] = missing
        return out

    def _record_engine(self, key: str, gen: Generator) -> None:
        """A phase's engine time split and, for a local llama.cpp model, the context (cells per
        sequence) and live sequences it ran with after the memory budget's cap."""
        self.engine_timings[key] = dict(gen.timings)
        cells, sequences = getattr(gen, "n_ctx", None), getattr(gen, "max_sequences", None)
        if isinstance(cells, int) and isinstance(sequences, int):
            self.engine_phases[key] = {"cells": cells, "sequences": sequences}

    def summary(self) -> dict[str, Any]:
        return {
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "engine_timings": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in self.engine_timings.items()},
            "engine_phases": {k: dict(v) for k, v in self.engine_phases.items()},
            "generated_now": self.generated,
            "skipped": self.skipped,
            "dropped_examples": self.dropped_examples,
            "peak_rss_mb_by_phase": {k: round(v, 1) for k, v in self.peak_rss_mb.items()},
        }


def settings_dict(settings: StudySettings) -> dict[str, Any]:
    d = asdict(settings)
    d["conditions"] = list(settings.conditions)
    return d
