"""Judge-free quality control (docs/method.md §7): flag responses no reader would count as an
answer, and recompute a set's diversity on the responses that pass.

Filters (a response may trip several; it *passes* when it trips none):

- **empty**: nothing but whitespace.
- **terse**: fewer than ``MIN_TOKENS`` (5) tokens that are not punctuation (``response_length``):
  "Yes.", "No, it is not." (4). Such an answer names a side but says nothing a reader could weigh;
  36% of llama-2-base's answers on the paper's ConflictingQA release are this short, none of
  gpt-3.5-turbo's.
- **degenerate** (repetition): the share of repeated word 3-grams is >= 0.5, or one line (that holds
  a letter or digit) occurs 3 or more times. Word 3-grams are taken over the lower-cased tokens that
  are not punctuation; the repeated share is 1 - distinct / total ("a b c a b c" has 4 3-grams, 3
  distinct: 0.25). Ordinary prose stays far below 0.5 (gpt-3.5-turbo's answers on the release: none
  at 0.3); loops ("If the body were capable ... If the body was capable ...") and walls of the same
  URL line reach it.
- **off_topic**: cosine(prompt vector, response vector) < ``OFF_TOPIC_COSINE`` (0.15), with the
  embedder's sentence vectors; tested only on responses that are neither empty nor terse (a bare
  "Yes." has too little text for the embedder: its cosine with its own question is 0.06-0.15, so it
  would read as off-topic; it is flagged terse instead). On the release, among base answers of 10 or
  more tokens, cosine < 0.15 flags 0.6%: a shell session's /etc/os-release, a list of author lines,
  "True, and it's even more interesting than you might think."; 0.15-0.25 holds mostly short but
  relevant answers ("Yes, but only if the client is willing to quit.", 0.24), so the threshold
  stays low. gpt-3.5-turbo's lowest 1% of answers are at 0.63.

The diversity on passing responses is the within-prompt Jaccard (and, with an embedder, the
embedding diversity) over the prompts that keep at least two responses; the others drop out and are
counted. Because dropping prompts changes the mean by itself, the raw figure is also given on the
same kept prompts (``raw_kept``): the effect of removing responses is ``filtered - raw_kept``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lite_align.data import SampleSet
from lite_align.metrics.embedding import embedding_diversity
from lite_align.metrics.lexical import diversity
from lite_align.stats import Estimate, ratio_ci
from lite_align.text import is_punctuation, response_length, tokenize

__all__ = [
    "FILTERS",
    "MIN_RESPONSES",
    "MIN_TOKENS",
    "OFF_TOPIC_COSINE",
    "FilteredDiversity",
    "QualityFilterResult",
    "ResponseFlags",
    "diversity_after_filter",
    "filter_quality",
    "flag_responses",
    "is_degenerate",
    "is_terse",
    "max_line_repeats",
    "repeated_ngram_share",
]

FILTERS = ("empty", "terse", "degenerate", "off_topic")
MIN_TOKENS = 5
REPEAT_NGRAM = 3
REPEAT_SHARE = 0.5
REPEAT_LINES = 3
OFF_TOPIC_COSINE = 0.15
MIN_RESPONSES = 2  # a prompt needs a pair of passing responses to have a diversity figure

_HAS_WORD = re.compile(r"\w")


class SentenceEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def is_terse(text: str, min_tokens: int = MIN_TOKENS) -> bool:
    """Non-empty, with fewer than ``min_tokens`` tokens that are not punctuation.

    >>> [is_terse(t) for t in ["Yes.", "No, it is not.", "No, there is no evidence.", ""]]
    [True, True, False, False]
    """
    return bool(text.strip()) and response_length(text) < min_tokens


def repeated_ngram_share(text: str, n: int = REPEAT_NGRAM) -> float:
    """1 - distinct / total word n-grams (lower-cased, punctuation dropped); 0 without n-grams.

    >>> repeated_ngram_share("a b c a b c")  # abc bca cab abc: 3 distinct of 4
    0.25
    >>> repeated_ngram_share("Yes. Yes. Yes. Yes.")  # yes-yes-yes twice
    0.5
    """
    words = [t.lower() for t in tokenize(text) if not is_punctuation(t)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def max_line_repeats(text: str) -> int:
    """How often the commonest line (stripped, holding a letter or digit) occurs; 0 without one.

    >>> max_line_repeats("See:\\nhttp://a.org\\n---\\n---\\n---\\nhttp://a.org ")
    2
    """
    counts = Counter(line.strip() for line in text.split("\n") if _HAS_WORD.search(line))
    return max(counts.values(), default=0)


def is_degenerate(text: str) -> bool:
    """Repeated 3-gram share >= 0.5, or one line repeated >= 3 times.

    >>> is_degenerate("I think so. I think so. I think so. I think so.")
    True
    >>> is_degenerate("Yes, because the data show it and the review agrees.")
    False
    """
    return repeated_ngram_share(text) >= REPEAT_SHARE or max_line_repeats(text) >= REPEAT_LINES


@dataclass(frozen=True)
class ResponseFlags:
    """The filters one response trips; ``off_topic`` is None when it was not tested (no embedder or
    no prompt text, or the response is empty or terse), ``cosine`` likewise."""

    empty: bool
    terse: bool
    degenerate: bool
    off_topic: bool | None
    cosine: float | None = None

    @property
    def passed(self) -> bool:
        return not (self.empty or self.terse or self.degenerate or self.off_topic)


def flag_responses(
    sample_set: SampleSet,
    *,
    embedder: SentenceEmbedder | None = None,
    prompts: Mapping[int, str] | None = None,
    min_tokens: int = MIN_TOKENS,
    off_topic_cosine: float = OFF_TOPIC_COSINE,
) -> dict[int, tuple[ResponseFlags, ...]]:
    """Prompt id -> the flags of each response, in sample order. The off-topic test runs when an
    embedder is given and the prompt's text is known (``prompts``, else ``sample_set.prompts``)."""
    texts = prompts if prompts is not None else sample_set.prompts
    flags: dict[int, list[ResponseFlags]] = {}
    to_embed: list[tuple[int, int]] = []  # (prompt id, sample index) of responses to test
    for pid in sample_set.prompt_ids():
        row = []
        for i, text in enumerate(sample_set.by_prompt[pid]):
            empty = not text.strip()
            terse = not empty and response_length(text) < min_tokens
            degenerate = not empty and is_degenerate(text)
            row.append(ResponseFlags(empty, terse, degenerate, None))
            if embedder is not None and pid in texts and not (empty or terse):
                to_embed.append((pid, i))
        flags[pid] = row
    if embedder is not None and to_embed:
        pids = sorted({pid for pid, _ in to_embed})
        prompt_vecs = dict(zip(pids, _unit(embedder.embed([texts[pid] for pid in pids])), strict=True))
        responses = _unit(embedder.embed([sample_set.by_prompt[pid][i] for pid, i in to_embed]))
        for (pid, i), vector in zip(to_embed, responses, strict=True):
            cos = float(prompt_vecs[pid] @ vector)
            old = flags[pid][i]
            flags[pid][i] = ResponseFlags(old.empty, old.terse, old.degenerate, cos < off_topic_cosine, cos)
    return {pid: tuple(row) for pid, row in flags.items()}


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)


@dataclass(frozen=True)
class FilteredDiversity:
    """A set's diversity before and after keeping only some responses.

    ``*_raw``: all prompts; ``*_raw_kept``: the raw figure over the prompts that keep at least two
    responses; ``*_filtered``: those prompts, kept responses only. Embedding figures are None
    without an embedder."""

    jaccard_raw: Estimate
    jaccard_raw_kept: Estimate
    jaccard_filtered: Estimate
    embedding_raw: Estimate | None
    embedding_raw_kept: Estimate | None
    embedding_filtered: Estimate | None
    n_prompts: int
    n_prompts_kept: int
    n_responses: int
    n_responses_kept: int  # in the kept prompts

    @property
    def n_prompts_dropped(self) -> int:
        return self.n_prompts - self.n_prompts_kept

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in ("jaccard", "embedding"):
            for which in ("raw", "raw_kept", "filtered"):
                est: Estimate | None = getattr(self, f"{kind}_{which}")
                out[f"{kind}_{which}"] = None if est is None else _number(est.mean)
        out["ci"] = {
            name: [_number(est.lo), _number(est.hi)]
            for name in ("jaccard_raw", "jaccard_filtered", "embedding_raw", "embedding_filtered")
            if (est := getattr(self, name)) is not None
        }
        out.update(
            n_prompts=self.n_prompts,
            n_prompts_kept=self.n_prompts_kept,
            n_prompts_dropped=self.n_prompts_dropped,
            n_responses=self.n_responses,
            n_responses_kept=self.n_responses_kept,
        )
        return out


def _number(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def diversity_after_filter(
    sample_set: SampleSet,
    keep: Mapping[int, Sequence[bool]],
    *,
    embedder: Any | None = None,
    min_responses: int = MIN_RESPONSES,
) -> FilteredDiversity:
    """Diversity of ``sample_set`` raw and on the responses marked True in ``keep`` (prompt id ->
    one bool per response; a prompt absent from ``keep`` keeps nothing). ``embedder`` must be an
    ``lite_align.embed.Embedder`` (embedding diversity) or None."""
    kept: dict[int, tuple[str, ...]] = {}
    for pid in sample_set.prompt_ids():
        marks = keep.get(pid, ())
        texts = tuple(t for t, ok in zip(sample_set.by_prompt[pid], marks, strict=False) if ok)
        if len(texts) >= min_responses:
            kept[pid] = texts
    filtered = SampleSet(f"{sample_set.label} (passing)", kept, prompts=sample_set.prompts)
    raw_kept = SampleSet(sample_set.label, {pid: sample_set.by_prompt[pid] for pid in kept})

    def emb(s: SampleSet) -> Estimate | None:
        return embedding_diversity(s, embedder) if embedder is not None else None

    return FilteredDiversity(
        jaccard_raw=diversity(sample_set).jaccard_within,
        jaccard_raw_kept=diversity(raw_kept).jaccard_within,
        jaccard_filtered=diversity(filtered).jaccard_within,
        embedding_raw=emb(sample_set),
        embedding_raw_kept=emb(raw_kept),
        embedding_filtered=emb(filtered),
        n_prompts=sample_set.n_prompts,
        n_prompts_kept=len(kept),
        n_responses=sample_set.n_responses,
        n_responses_kept=filtered.n_responses,
    )


@dataclass(frozen=True)
class QualityFilterResult:
    """Per set: the share of responses each filter flags (``off_topic`` None when not tested), the
    share that passes, and the diversity on the passing responses."""

    label: str
    shares: Mapping[str, Estimate | None]
    passed: Estimate
    diversity: FilteredDiversity
    off_topic_cosine: float
    n_responses: int

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "flagged": {name: None if est is None else _number(est.mean) for name, est in self.shares.items()},
            "passed": _number(self.passed.mean),
            "ci": {
                name: [_number(est.lo), _number(est.hi)]
                for name, est in [*self.shares.items(), ("passed", self.passed)]
                if est is not None
            },
            "diversity": self.diversity.to_json(),
            "off_topic_cosine": self.off_topic_cosine,
            "n_responses": self.n_responses,
        }


def filter_quality(
    sample_set: SampleSet,
    *,
    embedder: Any | None = None,
    prompts: Mapping[int, str] | None = None,
    min_tokens: int = MIN_TOKENS,
    off_topic_cosine: float = OFF_TOPIC_COSINE,
) -> QualityFilterResult:
    """Flag every response of ``sample_set`` and measure its diversity on those that pass.
    Shares are responses flagged / responses, with a bootstrap interval over prompts."""
    flags = flag_responses(
        sample_set, embedder=embedder, prompts=prompts, min_tokens=min_tokens, off_topic_cosine=off_topic_cosine
    )
    ids = sorted(flags)
    n = np.array([len(flags[pid]) for pid in ids], dtype=np.float64)

    def share(name: str) -> Estimate:
        counts = [sum(bool(getattr(f, name)) for f in flags[pid]) for pid in ids]
        return ratio_ci(np.array(counts, dtype=np.float64), n)

    tested = any(f.off_topic is not None for row in flags.values() for f in row)
    shares = {name: share(name) if name != "off_topic" or tested else None for name in FILTERS}
    passed = ratio_ci(np.array([sum(f.passed for f in flags[pid]) for pid in ids], dtype=np.float64), n)
    keep = {pid: [f.passed for f in row] for pid, row in flags.items()}
    return QualityFilterResult(
        label=sample_set.label,
        shares=shares,
        passed=passed,
        diversity=diversity_after_filter(sample_set, keep, embedder=embedder),
        off_topic_cosine=off_topic_cosine,
        n_responses=sample_set.n_responses,
    )
