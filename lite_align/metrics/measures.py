"""The diversity measures beyond the paper (issue 14), each described for a metric registry, and
all of them over a sample set.

Every measure is a pure function of one prompt's samples, wrapped in a ``Measure`` descriptor:
its ``--json`` key, a label, its direction (``higher_is_more_diverse``), what it needs (``texts``,
``words`` = lite_align.text tokens, ``embeddings`` = one sentence vector per sample,
``vocab_size``) and its source. ``Measure.per_prompt`` takes a ``PromptSamples``, which computes
each shared input (word tokens, the n-gram table, ROUGE tokens, the classes) once per prompt,
whichever measures ask for it.

``measure_set`` runs the measures over a ``SampleSet``: per prompt (prompts with fewer than
``MIN_SAMPLES`` samples have no value), then the mean over prompts with a 95% bootstrap interval
over prompts (lite_align.stats), the per-prompt values in prompt-id order, and EAD across prompts.

    >>> from lite_align.data import SampleSet
    >>> s = SampleSet("toy", {0: ("Yes.", "Yes.", "No."), 1: ("A cat sat.", "A dog ran.", "Birds fly.")})
    >>> r = measure_set(s, keys=["distinct_classes", "self_bleu"])
    >>> r.per_prompt["distinct_classes"].tolist(), r.estimates["distinct_classes"].mean
    ([2.0, 3.0], 2.5)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from lite_align.data import SampleSet
from lite_align.metrics.agreement import AgreementTable, agreement_table
from lite_align.metrics.compression import compression_ratio
from lite_align.metrics.ead import DEFAULT_VOCAB_SIZE, EAD_ORDERS, ead_across_prompts_ids, ead_from_table
from lite_align.metrics.ngrams import NgramTable, Vocabulary, ngram_table_ids
from lite_align.metrics.novelty import class_count, partition_embedding, partition_rouge1, semantic_entropy
from lite_align.metrics.repetition import ngram_diversity_ids, self_repetition_ids
from lite_align.metrics.rouge import homogenization_rougel_tokens, rouge_tokens
from lite_align.metrics.selfbleu import self_bleu_from_table
from lite_align.metrics.vendi import ngram_kernel_from_table, vendi_from_kernel, vendi_from_vectors
from lite_align.stats import Estimate, mean_ci
from lite_align.text import tokenize

if TYPE_CHECKING:
    from lite_align.embed import Embedder

__all__ = [
    "MEASURES",
    "MIN_SAMPLES",
    "NEEDS",
    "Measure",
    "MeasuresResult",
    "PromptSamples",
    "TextCache",
    "measure",
    "measure_agreement",
    "measure_set",
    "vectors_by_prompt",
]

MIN_SAMPLES = 2
NEEDS = frozenset({"texts", "words", "embeddings", "vocab_size"})
_MAX_ORDER = max(max(EAD_ORDERS), 4)


class TextCache:
    """What each text turns into, computed once per distinct text: its word tokens
    (lite_align.text), their integer ids, its whitespace words' ids and its ROUGE tokens. One cache
    serves every prompt of a sample set (or of several)."""

    def __init__(self, tokenizer: Callable[[str], list[str]] = tokenize) -> None:
        self.tokenizer = tokenizer
        self.vocabulary = Vocabulary()
        self._words: dict[str, list[str]] = {}
        self._word_ids: dict[str, np.ndarray] = {}
        self._space_ids: dict[str, np.ndarray] = {}
        self._rouge: dict[str, list[str]] = {}

    def words(self, text: str) -> list[str]:
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = self.tokenizer(text)
        return found

    def word_ids(self, text: str) -> np.ndarray:
        found = self._word_ids.get(text)
        if found is None:
            found = self._word_ids[text] = self.vocabulary.encode(self.words(text))
        return found

    def whitespace_ids(self, text: str) -> np.ndarray:
        found = self._space_ids.get(text)
        if found is None:
            found = self._space_ids[text] = self.vocabulary.encode(text.split())
        return found

    def rouge(self, text: str) -> list[str]:
        found = self._rouge.get(text)
        if found is None:
            found = self._rouge[text] = rouge_tokens(text)
        return found


class PromptSamples:
    """One prompt's samples and the inputs derived from them, each computed on first use.

    ``vectors``: (samples x d) sentence vectors or None; ``vocab_size``: for EAD; ``cache``: a
    ``TextCache`` shared with other prompts (a private one by default)."""

    def __init__(
        self,
        texts: Sequence[str],
        vectors: np.ndarray | None = None,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        cache: TextCache | None = None,
    ) -> None:
        self.texts = tuple(texts)
        if vectors is not None and len(vectors) != len(self.texts):
            raise ValueError(f"{len(self.texts)} samples but {len(vectors)} sentence vectors")
        self.vectors = vectors
        self.vocab_size = vocab_size
        self.cache = TextCache() if cache is None else cache

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def words(self) -> list[list[str]]:
        return [self.cache.words(t) for t in self.texts]

    @cached_property
    def ngrams(self) -> NgramTable:
        return ngram_table_ids([self.cache.word_ids(t) for t in self.texts], _MAX_ORDER)

    @cached_property
    def whitespace_ids(self) -> list[np.ndarray]:
        return [self.cache.whitespace_ids(t) for t in self.texts]

    @cached_property
    def rouge(self) -> list[list[str]]:
        return [self.cache.rouge(t) for t in self.texts]

    @cached_property
    def vendi_ngram(self) -> float:
        return vendi_from_kernel(ngram_kernel_from_table(self.ngrams, self.words))

    @cached_property
    def vendi_embedding(self) -> float:
        return vendi_from_vectors(self._need_vectors())

    @cached_property
    def classes_rouge1(self) -> list[int]:
        return partition_rouge1(self.texts, tokens=self.rouge)

    @cached_property
    def classes_embedding(self) -> list[int]:
        return partition_embedding(self.texts, self._need_vectors())

    def _need_vectors(self) -> np.ndarray:
        if self.vectors is None:
            raise ValueError("this measure needs sentence vectors; none were given")
        return self.vectors


@dataclass(frozen=True)
class Measure:
    """A diversity measure for the registry: ``per_prompt(samples) -> float`` (NaN = no value)."""

    key: str
    label: str
    higher_is_more_diverse: bool
    needs: frozenset[str]
    per_prompt: Callable[[PromptSamples], float] = field(compare=False)
    source: str = ""
    tokens: str = ""  # which token stream it reads

    def __post_init__(self) -> None:
        unknown = self.needs - NEEDS
        if unknown:
            raise ValueError(f"measure {self.key}: unknown needs {sorted(unknown)}")


_TEXT = frozenset({"texts"})
_WORDS = frozenset({"words"})
_NLTK = "lite_align.text.tokenize (NLTK word_tokenize: case and punctuation kept)"
_WHITESPACE = "the text split at whitespace (case and punctuation kept)"
_ROUGE = "rouge-score tokens (lower-cased ASCII letter/digit runs)"

_VENDI = "Friedman & Dieng 2023"
_SHAIB = "Shaib et al. 2024"
_NOVELTY = "Zhang et al. 2025 (NoveltyBench)"
_JOINED = "UTF-8 bytes of the samples joined by spaces"
_CLASSES_ROUGE = _ROUGE + "; short answers: lower-cased whitespace words"
_CLASSES_EMB = "sentence vectors; short answers: lower-cased whitespace words"
_EMB = frozenset({"embeddings"})
_TEXT_EMB = frozenset({"texts", "embeddings"})

MEASURES: tuple[Measure, ...] = (
    Measure(
        key="vendi_embedding",
        label="Vendi score (embedding)",
        higher_is_more_diverse=True,
        needs=_EMB,
        per_prompt=lambda p: p.vendi_embedding,
        source=_VENDI,
        tokens="sentence vectors",
    ),
    Measure(
        key="vendi_embedding_relative",
        label="Vendi score (embedding) / n",
        higher_is_more_diverse=True,
        needs=_EMB,
        per_prompt=lambda p: p.vendi_embedding / len(p),
        source=_VENDI,
        tokens="sentence vectors",
    ),
    Measure(
        key="vendi_ngram",
        label="Vendi score (n-gram)",
        higher_is_more_diverse=True,
        needs=_WORDS,
        per_prompt=lambda p: p.vendi_ngram,
        source=_VENDI,
        tokens=_NLTK,
    ),
    Measure(
        key="vendi_ngram_relative",
        label="Vendi score (n-gram) / n",
        higher_is_more_diverse=True,
        needs=_WORDS,
        per_prompt=lambda p: p.vendi_ngram / len(p),
        source=_VENDI,
        tokens=_NLTK,
    ),
    Measure(
        key="ead",
        label="EAD (n = 1..5)",
        higher_is_more_diverse=True,
        needs=frozenset({"words", "vocab_size"}),
        per_prompt=lambda p: ead_from_table(p.ngrams, p.vocab_size),
        source="Liu et al. 2022",
        tokens=_NLTK,
    ),
    Measure(
        key="compression_ratio_gzip",
        label="Compression ratio (gzip)",
        higher_is_more_diverse=False,
        needs=_TEXT,
        per_prompt=lambda p: compression_ratio(p.texts, "gzip"),
        source=_SHAIB,
        tokens=_JOINED,
    ),
    Measure(
        key="compression_ratio_xz",
        label="Compression ratio (xz)",
        higher_is_more_diverse=False,
        needs=_TEXT,
        per_prompt=lambda p: compression_ratio(p.texts, "xz"),
        source=_SHAIB,
        tokens=_JOINED,
    ),
    Measure(
        key="homogenization_rougel",
        label="Homogenization (ROUGE-L)",
        higher_is_more_diverse=False,
        needs=_TEXT,
        per_prompt=lambda p: homogenization_rougel_tokens(p.rouge),
        source=_SHAIB + "; Padmakumar & He 2024",
        tokens=_ROUGE,
    ),
    Measure(
        key="ngram_diversity",
        label="N-gram diversity (n = 1..4)",
        higher_is_more_diverse=True,
        needs=_TEXT,
        per_prompt=lambda p: ngram_diversity_ids(p.whitespace_ids),
        source=_SHAIB,
        tokens=_WHITESPACE,
    ),
    Measure(
        key="self_repetition",
        label="Self-repetition",
        higher_is_more_diverse=False,
        needs=_TEXT,
        per_prompt=lambda p: self_repetition_ids(p.whitespace_ids),
        source="Salkar et al. 2022; " + _SHAIB,
        tokens=_WHITESPACE,
    ),
    Measure(
        key="self_bleu",
        label="Self-BLEU-4",
        higher_is_more_diverse=False,
        needs=_WORDS,
        per_prompt=lambda p: self_bleu_from_table(p.ngrams),
        source="Zhu et al. 2018 (NLTK BLEU, smoothing method1)",
        tokens=_NLTK,
    ),
    Measure(
        key="distinct_classes",
        label="Distinct answers (ROUGE-1 classes)",
        higher_is_more_diverse=True,
        needs=_TEXT,
        per_prompt=lambda p: float(class_count(p.classes_rouge1)),
        source=_NOVELTY,
        tokens=_CLASSES_ROUGE,
    ),
    Measure(
        key="semantic_entropy",
        label="Semantic entropy (ROUGE-1 classes)",
        higher_is_more_diverse=True,
        needs=_TEXT,
        per_prompt=lambda p: semantic_entropy(p.classes_rouge1),
        source=_NOVELTY + " classes; discrete entropy",
        tokens=_CLASSES_ROUGE,
    ),
    Measure(
        key="distinct_classes_embedding",
        label="Distinct answers (embedding classes)",
        higher_is_more_diverse=True,
        needs=_TEXT_EMB,
        per_prompt=lambda p: float(class_count(p.classes_embedding)),
        source=_NOVELTY + ", sentence-embedding variant",
        tokens=_CLASSES_EMB,
    ),
    Measure(
        key="semantic_entropy_embedding",
        label="Semantic entropy (embedding classes)",
        higher_is_more_diverse=True,
        needs=_TEXT_EMB,
        per_prompt=lambda p: semantic_entropy(p.classes_embedding),
        source=_NOVELTY + " classes, sentence-embedding variant; discrete entropy",
        tokens=_CLASSES_EMB,
    ),
)
_BY_KEY = {m.key: m for m in MEASURES}


def measure(key: str) -> Measure:
    """The measure registered under ``key`` (a one-line error naming the known keys otherwise)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown measure {key!r}; known: {', '.join(_BY_KEY)}") from None


@dataclass(frozen=True)
class MeasuresResult:
    """Every requested measure of one sample set; per-prompt arrays follow ``prompt_ids``."""

    label: str
    keys: tuple[str, ...]
    estimates: Mapping[str, Estimate]
    prompt_ids: tuple[int, ...]
    per_prompt: Mapping[str, np.ndarray] = field(compare=False, repr=False)
    ead_across_prompts: float = float("nan")
    vocab_size: int = DEFAULT_VOCAB_SIZE
    vocab_size_known: bool = False

    def to_json(self) -> dict[str, Any]:
        """Each measure's mean under its key, intervals under ``ci``, EAD across prompts and V."""
        out: dict[str, Any] = {key: _number(self.estimates[key].mean) for key in self.keys}
        out["ci"] = {key: [_number(self.estimates[key].lo), _number(self.estimates[key].hi)] for key in self.keys}
        out["ead_across_prompts"] = _number(self.ead_across_prompts)
        out["ead_vocab_size"] = self.vocab_size
        out["ead_vocab_size_known"] = self.vocab_size_known
        return out


def _number(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _selected(keys: Iterable[str] | None, have_vectors: bool) -> tuple[Measure, ...]:
    if keys is None:
        return tuple(m for m in MEASURES if have_vectors or "embeddings" not in m.needs)
    chosen = tuple(measure(k) for k in keys)
    if not have_vectors:
        lacking = [m.key for m in chosen if "embeddings" in m.needs]
        if lacking:
            raise ValueError(f"{', '.join(lacking)} need sentence vectors; pass vectors (see vectors_by_prompt)")
    return chosen


def measure_set(
    sample_set: SampleSet,
    *,
    vectors: Mapping[int, np.ndarray] | None = None,
    vocab_size: int | None = None,
    keys: Iterable[str] | None = None,
    text_cache: TextCache | None = None,
) -> MeasuresResult:
    """All measures (or those in ``keys``) over ``sample_set``.

    ``vectors``: prompt id -> (samples x d) sentence vectors, in sample order; without them the
    embedding measures are left out (asked for by key, they are an error). ``vocab_size``: the
    generating model's vocabulary size for EAD; None uses ``DEFAULT_VOCAB_SIZE`` and says so.
    ``text_cache``: to share tokens between calls over sets with texts in common.
    """
    chosen = _selected(keys, vectors is not None)
    ids = tuple(pid for pid in sample_set.prompt_ids() if sample_set.by_prompt[pid])
    v = DEFAULT_VOCAB_SIZE if vocab_size is None else int(vocab_size)
    cache = TextCache() if text_cache is None else text_cache

    values = np.full((len(chosen), len(ids)), np.nan)
    for col, pid in enumerate(ids):
        texts = sample_set.by_prompt[pid]
        if len(texts) < MIN_SAMPLES:
            continue
        vecs = None
        if vectors is not None:
            if pid not in vectors:
                label = sample_set.label
                raise ValueError(f"no sentence vectors for prompt {pid} of {label}; embed every prompt's samples")
            vecs = np.asarray(vectors[pid])
        prompt = PromptSamples(texts, vecs, v, cache)
        for row, m in enumerate(chosen):
            values[row, col] = m.per_prompt(prompt)
    per_prompt = {m.key: values[row] for row, m in enumerate(chosen)}
    estimates = {key: mean_ci(vals[~np.isnan(vals)]) for key, vals in per_prompt.items()}
    firsts = [cache.word_ids(sample_set.by_prompt[pid][0]) for pid in ids]
    return MeasuresResult(
        label=sample_set.label,
        keys=tuple(m.key for m in chosen),
        estimates=estimates,
        prompt_ids=ids,
        per_prompt=per_prompt,
        ead_across_prompts=ead_across_prompts_ids(firsts, v) if firsts else float("nan"),
        vocab_size=v,
        vocab_size_known=vocab_size is not None,
    )


def vectors_by_prompt(sample_set: SampleSet, embedder: Embedder) -> dict[int, np.ndarray]:
    """Prompt id -> sentence vectors of its samples, from one ``embed`` call (batched and cached)."""
    ids = [pid for pid in sample_set.prompt_ids() if sample_set.by_prompt[pid]]
    vectors = embedder.embed([t for pid in ids for t in sample_set.by_prompt[pid]])
    out: dict[int, np.ndarray] = {}
    start = 0
    for pid in ids:
        n = len(sample_set.by_prompt[pid])
        out[pid] = vectors[start : start + n]
        start += n
    return out


def measure_agreement(
    result: MeasuresResult, others: Mapping[str, tuple[np.ndarray, bool]] | None = None
) -> AgreementTable:
    """Spearman's rho over prompts between every pair of the result's measures (oriented so that
    positive = agree on which prompts are more diverse). ``others``: further per-prompt series on
    the same prompt ids (e.g. the paper's metrics), key -> (values, higher_is_more_diverse)."""
    series: dict[str, np.ndarray] = dict(result.per_prompt)
    directions = {key: measure(key).higher_is_more_diverse for key in result.keys}
    for key, (vals, higher) in (others or {}).items():
        series[key] = np.asarray(vals, dtype=np.float64)
        directions[key] = higher
    return agreement_table(series, directions)
