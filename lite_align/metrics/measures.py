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

What the reports and ``--json`` take, as plain JSON-ready dicts:

- ``measures_json``: one sample set's block, shaped as a ``diversity --json`` row is (each
  measure's mean under its key, its interval under ``ci``); ``add_to_row`` merges it into one.
- ``agreement_json``: Spearman's rho over prompts between every pair of measures (with the
  paper's per-prompt measures, ``paper_series``), and how many prompts each rho rests on.
- ``paired_differences``: B − A per measure over matched prompts with a paired bootstrap
  interval, shaped as ``compare``'s lexical rows are.

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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lite_align.data import SampleSet
from lite_align.metrics.agreement import AgreementTable, agreement_table
from lite_align.metrics.compression import compression_ratio
from lite_align.metrics.ead import DEFAULT_VOCAB_SIZE, EAD_ORDERS, ead_across_prompts_ids, ead_from_table
from lite_align.metrics.embedding import mean_pairwise_cosine_distance
from lite_align.metrics.ngrams import NgramTable, Vocabulary, ngram_table_ids
from lite_align.metrics.novelty import class_count, partition_embedding, partition_rouge1, semantic_entropy
from lite_align.metrics.repetition import ngram_diversity_ids, self_repetition_ids
from lite_align.metrics.rouge import homogenization_rougel_tokens, rouge_tokens
from lite_align.metrics.selfbleu import self_bleu_from_table
from lite_align.metrics.vendi import ngram_kernel_from_table, vendi_from_kernel, vendi_from_vectors
from lite_align.stats import N_BOOT, SEED, Estimate, diff_ci, mean_ci
from lite_align.text import tokenize

if TYPE_CHECKING:
    from lite_align.metrics.lexical import DiversityResult

__all__ = [
    "AGREEMENT_KEYS",
    "EMBEDDING_KEYS",
    "MEASURES",
    "MIN_SAMPLES",
    "NEEDS",
    "PAPER_DIRECTIONS",
    "TEXT_KEYS",
    "Measure",
    "MeasuresResult",
    "PromptSamples",
    "TextCache",
    "add_to_row",
    "agreement_json",
    "measure",
    "measure_agreement",
    "measure_set",
    "measures_json",
    "paired_difference",
    "paired_differences",
    "paper_series",
    "per_prompt_by_id",
    "vectors_by_prompt",
]

MIN_SAMPLES = 2
PROMPT_BLOCK = 512  # prompts measured together (measure_set): a whole file of the release
_ALPHA = 0.05  # 95% intervals, as stats.mean_ci's default


class Embeds(Protocol):
    """What the embedding measures need of an embedder (lite_align.embed.Embedder has it)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


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

    def figures(self) -> dict[str, Estimate]:
        """Every figure of the set, in ``--json`` order: each measure's estimate, then EAD across
        prompts (one figure over the prompts' first samples: no interval, ``n`` = the prompts)."""
        across = Estimate(self.ead_across_prompts, float("nan"), float("nan"), len(self.prompt_ids))
        return {**{key: self.estimates[key] for key in self.keys}, "ead_across_prompts": across}

    def extras(self) -> dict[str, Any]:
        """What the row says beside the figures: the vocabulary size EAD used, and whether it is
        the generating model's (False: ``DEFAULT_VOCAB_SIZE``)."""
        return {"ead_vocab_size": self.vocab_size, "ead_vocab_size_known": self.vocab_size_known}

    def to_json(self) -> dict[str, Any]:
        """Each figure's mean under its key and its interval under ``ci`` (as every diversity row
        gives them; EAD across prompts has none: [null, null]), then ``extras``."""
        figures = self.figures()
        out: dict[str, Any] = {key: _number(e.mean) for key, e in figures.items()}
        out["ci"] = {key: [_number(e.lo), _number(e.hi)] for key, e in figures.items()}
        out.update(self.extras())
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
    embedder: Embeds | None = None,
) -> MeasuresResult:
    """All measures (or those in ``keys``) over ``sample_set``.

    ``vectors``: prompt id -> (samples x d) sentence vectors, in sample order, or ``embedder`` to
    compute them (one batched, cached ``embed`` call; give one of the two); with neither, the
    embedding measures are left out (asked for by key, they are an error). ``vocab_size``: the
    generating model's vocabulary size for EAD (``lite_align.gguf_check.gguf_vocab_size``); None
    uses ``DEFAULT_VOCAB_SIZE`` and says so. ``text_cache``: to share tokens between calls over
    sets with texts in common.
    """
    if embedder is not None:
        if vectors is not None:
            raise ValueError("give sentence vectors or an embedder, not both")
        vectors = vectors_by_prompt(sample_set, embedder)
    if vocab_size is not None and (isinstance(vocab_size, bool) or int(vocab_size) < 1):
        raise ValueError(f"the vocabulary size must be a positive whole number, not {vocab_size!r}")
    chosen = _selected(keys, vectors is not None)
    ids = tuple(pid for pid in sample_set.prompt_ids() if sample_set.by_prompt[pid])
    v = DEFAULT_VOCAB_SIZE if vocab_size is None else int(vocab_size)
    cache = TextCache() if text_cache is None else text_cache

    values = np.full((len(chosen), len(ids)), np.nan)
    columns = [col for col, pid in enumerate(ids) if len(sample_set.by_prompt[pid]) >= MIN_SAMPLES]
    # Measure by measure over a block of prompts rather than prompt by prompt: the same values,
    # faster (the six release files: 7.6 s against 9.2 s, measured; blocks of 64 prompts gained
    # nothing), while only one block's shared inputs (n-gram tables, classes) are held at once.
    for start in range(0, len(columns), PROMPT_BLOCK):
        block = columns[start : start + PROMPT_BLOCK]
        prompts = [
            PromptSamples(sample_set.by_prompt[ids[col]], _vectors_of(vectors, ids[col], sample_set), v, cache)
            for col in block
        ]
        for row, m in enumerate(chosen):
            values[row, block] = [m.per_prompt(prompt) for prompt in prompts]
    per_prompt = {m.key: values[row] for row, m in enumerate(chosen)}
    estimates = _means_with_intervals(per_prompt)
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


def _vectors_of(vectors: Mapping[int, np.ndarray] | None, pid: int, sample_set: SampleSet) -> np.ndarray | None:
    if vectors is None:
        return None
    if pid not in vectors:
        raise ValueError(f"no sentence vectors for prompt {pid} of {sample_set.label}; embed every prompt's samples")
    return np.asarray(vectors[pid])


def _means_with_intervals(per_prompt: Mapping[str, np.ndarray]) -> dict[str, Estimate]:
    """``stats.mean_ci`` of each series' values (NaN left out), the same numbers with fewer draws:
    mean_ci draws its resampled prompt indices from a fixed seed, so series with as many values
    share them; they are drawn once per count here instead of once per series."""
    out: dict[str, Estimate] = {}
    draws: dict[int, np.ndarray] = {}
    for key, series in per_prompt.items():
        x = series[~np.isnan(series)]
        n = int(x.size)
        if n < 2:
            out[key] = mean_ci(x)
            continue
        if n not in draws:
            draws[n] = np.random.default_rng(SEED).integers(0, n, size=(N_BOOT, n))
        lo, hi = np.nanpercentile(x[draws[n]].mean(axis=1), [100 * _ALPHA / 2, 100 * (1 - _ALPHA / 2)])
        out[key] = Estimate(float(x.mean()), float(lo), float(hi), n)
    return out


def vectors_by_prompt(sample_set: SampleSet, embedder: Embeds) -> dict[int, np.ndarray]:
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
    result: MeasuresResult,
    others: Mapping[str, tuple[np.ndarray, bool]] | None = None,
    *,
    keys: Iterable[str] | None = None,
) -> AgreementTable:
    """Spearman's rho over prompts between every pair of the result's measures (or of ``keys``;
    oriented so that positive = agree on which prompts are more diverse). ``others``: further
    per-prompt series on the same prompt ids (e.g. the paper's metrics), key -> (values,
    higher_is_more_diverse)."""
    chosen = result.keys if keys is None else tuple(keys)
    series: dict[str, np.ndarray] = {key: result.per_prompt[key] for key in chosen}
    directions = {key: measure(key).higher_is_more_diverse for key in chosen}
    for key, (vals, higher) in (others or {}).items():
        series[key] = np.asarray(vals, dtype=np.float64)
        directions[key] = higher
    return agreement_table(series, directions)


# --------------------------------------------------------------------------------------------------
# JSON-ready blocks for the reports, --json and compare


def measures_json(
    sample_set: SampleSet,
    *,
    embedder: Embeds | None = None,
    vectors: Mapping[int, np.ndarray] | None = None,
    vocab_size: int | None = None,
    text_cache: TextCache | None = None,
) -> dict[str, Any]:
    """One sample set's block for ``diversity --json`` / ``run --json``, shaped as the rows are
    today: every measure's mean over prompts under its key (null when no prompt has a value), then
    ``ead_across_prompts``; their 95% intervals under ``ci`` ([lo, hi], null where undefined; EAD
    across prompts has none); then ``ead_vocab_size`` and ``ead_vocab_size_known``. The embedding
    measures are there only with
    ``embedder`` or ``vectors``, as ``embedding_diversity`` is. Merge it into a row with
    ``add_to_row``; ``measure_set(...).to_json()`` gives the same when the result is needed too.

    >>> s = SampleSet("toy", {0: ("Yes.", "Yes.", "No."), 1: ("A cat sat.", "A dog ran.", "Birds fly.")})
    >>> block = measures_json(s)
    >>> block["distinct_classes"], block["ci"]["distinct_classes"], block["ead_vocab_size_known"]
    (2.5, [2.0, 3.0], False)
    """
    return measure_set(
        sample_set, embedder=embedder, vectors=vectors, vocab_size=vocab_size, text_cache=text_cache
    ).to_json()


def add_to_row(row: dict[str, Any], block: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a ``measures_json`` block into a ``diversity --json`` row (in place, and returned):
    its keys after the row's, its intervals into the row's ``ci``. A key the row already has is an
    error: the block never overwrites one of today's figures."""
    clash = sorted(((set(block) - {"ci"}) & set(row)) | (set(block.get("ci", {})) & set(row.get("ci", {}))))
    if clash:
        raise ValueError(f"the row already has {', '.join(clash)}; a measure key must be new")
    for key, value in block.items():
        if key != "ci":
            row[key] = value
    row.setdefault("ci", {}).update(block.get("ci", {}))
    return row


# The measures by what they need: the embedding ones only with sentence vectors (a registry family
# that needs the encoder), the others from the texts alone.
EMBEDDING_KEYS: tuple[str, ...] = tuple(m.key for m in MEASURES if "embeddings" in m.needs)
TEXT_KEYS: tuple[str, ...] = tuple(m.key for m in MEASURES if "embeddings" not in m.needs)

# The paper's per-prompt diversity measures that go into the agreement table beside ours, with
# their directions (a higher within-prompt Jaccard means more alike, i.e. less diverse). Length and
# the rates are not diversity measures and stay out.
PAPER_DIRECTIONS: dict[str, bool] = {
    "jaccard_within": False,
    "distinct_prefix_fraction": True,
    "embedding_diversity": True,
}
# The measures of the agreement table: each registered measure but the "/ n" variants, which rank
# prompts exactly as their raw measure does whenever the prompts have equally many samples.
AGREEMENT_KEYS: tuple[str, ...] = tuple(m.key for m in MEASURES if not m.key.endswith("_relative"))


def paper_series(
    lexical: DiversityResult | None = None, vectors: Mapping[int, np.ndarray] | None = None
) -> dict[str, dict[int, float]]:
    """The paper's per-prompt diversity measures as prompt id -> value (prompts without a value
    left out): word-bag Jaccard and distinct prefixes from a ``lexical.diversity`` result, and the
    embedding diversity (mean pairwise cosine distance) from the sentence vectors ``measure_set``
    used, so that no text is embedded twice."""
    out: dict[str, dict[int, float]] = {}
    if lexical is not None:
        for key in ("jaccard_within", "distinct_prefix_fraction"):
            out[key] = _by_id(lexical.prompt_ids, lexical.per_prompt[key])
    if vectors is not None:
        distances = {pid: mean_pairwise_cosine_distance(np.asarray(v)) for pid, v in vectors.items()}
        out["embedding_diversity"] = {pid: d for pid, d in sorted(distances.items()) if not np.isnan(d)}
    return out


def agreement_json(
    result: MeasuresResult,
    others: Mapping[str, Mapping[int, float]] | None = None,
    *,
    keys: Iterable[str] | None = None,
    directions: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """The metric agreement table of one sample set, JSON-ready: Spearman's rho over prompts
    between every pair of measures, oriented so that + means "rank the prompts' diversity alike".

    ``keys``: which of the result's measures (default: those of ``AGREEMENT_KEYS`` it holds).
    ``others``: further per-prompt series, key -> prompt id -> value: the paper's measures
    (``paper_series``), or measures of this module computed apart (``per_prompt_by_id`` of another
    result over the same set). Their directions (True: higher = more diverse) come from
    ``directions``, else ``PAPER_DIRECTIONS``, else this module's registry.

    Returns ``keys`` (row and column order), ``rho`` (a symmetric matrix, null where undefined:
    fewer than 3 prompts with both values, or a constant measure), ``n`` (the prompts each rho
    rests on), ``n_prompts`` (the set's prompts) and ``oriented`` (true).

    >>> a, b, c = "one two three four five six", "seven eight nine ten eleven twelve", "red blue green"
    >>> s = SampleSet("t", {0: (a, a, a), 1: (a, a, b), 2: (a, b, c), 3: (a,)})
    >>> t = agreement_json(measure_set(s), keys=["distinct_classes", "vendi_ngram"])
    >>> t["keys"], t["rho"][0][1], t["n"][0][1], t["n_prompts"]
    (['distinct_classes', 'vendi_ngram'], 1.0, 3, 4)
    """
    chosen = [k for k in AGREEMENT_KEYS if k in result.keys] if keys is None else list(keys)
    missing = [k for k in chosen if k not in result.keys]
    if missing:
        raise KeyError(f"{', '.join(missing)} not measured in {result.label}; measured: {', '.join(result.keys)}")
    known = {m.key: m.higher_is_more_diverse for m in MEASURES} | PAPER_DIRECTIONS | dict(directions or {})
    series: dict[str, tuple[np.ndarray, bool]] = {}
    for key, by_id in (others or {}).items():
        if key in chosen:
            raise ValueError(f"{key} is given twice: measured in {result.label} and among the other series")
        if key not in known:
            raise KeyError(f"no direction known for {key!r}; give it in directions")
        values = np.array([by_id.get(pid, np.nan) for pid in result.prompt_ids], dtype=np.float64)
        series[key] = (values, known[key])
    table = measure_agreement(result, series, keys=chosen)
    return {**table.to_json(), "n_prompts": len(result.prompt_ids)}


def per_prompt_by_id(result: MeasuresResult) -> dict[str, dict[int, float]]:
    """Each measure's per-prompt values as prompt id -> value, prompts without a value left out
    (what ``paired_differences`` pairs)."""
    return {key: _by_id(result.prompt_ids, result.per_prompt[key]) for key in result.keys}


def _by_id(ids: Sequence[int], values: np.ndarray) -> dict[int, float]:
    return {pid: float(v) for pid, v in zip(ids, values, strict=True) if not np.isnan(v)}


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], pairs: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """B − A of one measure over matched prompts, as ``compare`` reports a lexical measure:
    ``pairs`` holds (prompt id in A, prompt id in B) of the same prompt; a pair counts when both
    have a value. ``a`` and ``b``: the means over those pairs; ``diff``: the mean paired
    difference with its 95% bootstrap interval over the pairs (``ci``, ``stats.diff_ci``: same
    seed and resamples as every interval); ``n``: the pairs counted. Undefined figures are null.

    >>> paired_difference({0: 1.0, 1: 2.0}, {7: 1.0, 8: 3.0}, [(0, 7), (1, 8)])
    {'a': 1.5, 'b': 2.0, 'diff': 0.5, 'ci': [0.0, 1.0], 'n': 2}
    """
    kept = [(a[pa], b[pb]) for pa, pb in pairs if pa in a and pb in b]
    va = np.array([x for x, _ in kept], dtype=np.float64)
    vb = np.array([y for _, y in kept], dtype=np.float64)
    est = diff_ci(vb, va)
    return {
        "a": _number(float(va.mean())) if va.size else None,
        "b": _number(float(vb.mean())) if vb.size else None,
        "diff": _number(est.mean),
        "ci": [_number(est.lo), _number(est.hi)],
        "n": est.n,
    }


def paired_differences(
    a: MeasuresResult,
    b: MeasuresResult,
    pairs: Sequence[tuple[int, int]],
    *,
    keys: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``paired_difference`` of every measure both results hold (or of ``keys``), in registry
    order: measure key -> {"a", "b", "diff", "ci", "n"}. EAD across prompts is one figure per
    set, not per prompt, and has no paired difference."""
    chosen = [k for k in a.keys if k in b.keys] if keys is None else list(keys)
    missing = [k for k in chosen if k not in a.keys or k not in b.keys]
    if missing:
        raise KeyError(f"{', '.join(missing)} not measured in both {a.label} and {b.label}")
    by_a, by_b = per_prompt_by_id(a), per_prompt_by_id(b)
    return {key: paired_difference(by_a[key], by_b[key], pairs) for key in chosen}
