"""The field's diversity measures (issue 14, docs/method.md §9), registered as two metric families.

- ``field``: the measures read from the texts alone (Vendi with the n-gram kernel, EAD, gzip and xz
  compression ratios, ROUGE-L homogenization, n-gram diversity, self-repetition, Self-BLEU, the
  distinct answer classes by ROUGE-1 and their semantic entropy), and EAD across prompts (one
  figure over each prompt's first sample, no interval). Beside the figures each row says which
  vocabulary size EAD used (``ead_vocab_size``) and whether it is the generating model's
  (``ead_vocab_size_known``; else ``ead.DEFAULT_VOCAB_SIZE``). ``Inputs.vocab_size`` carries the
  model's size where the caller knows it (a run: from the GGUF of the model behind each condition).
- ``field_embedding``: the measures on sentence vectors (Vendi with the cosine kernel, the distinct
  answer classes by embedding similarity and their entropy): computed only with an embedder.

The measures themselves live in ``metrics.measures`` (one pure function per measure over a
prompt's samples); this file only says how the registry shows them. Being registered after the
paper's families (imported first here, whatever the order of the package's import lines), their
keys come after today's keys in every ``--json`` row, intervals under ``ci``.

    >>> from lite_align.data import SampleSet
    >>> s = SampleSet("toy", {0: ("Yes.", "Yes.", "No."), 1: ("A cat sat.", "A dog ran.", "Birds fly.")})
    >>> v = FAMILY.compute(s, Inputs())
    >>> v.estimates["distinct_classes"].mean, v.per_prompt["distinct_classes"], v.extra["ead_vocab_size_known"]
    (2.5, {0: 2.0, 1: 3.0}, False)
"""

from __future__ import annotations

from lite_align.data import SampleSet
from lite_align.metrics import embedding as _embedding  # noqa: F401  (registered before ours: see below)
from lite_align.metrics import lexical as _lexical  # noqa: F401
from lite_align.metrics.measures import EMBEDDING_KEYS, TEXT_KEYS, measure, measure_set, per_prompt_by_id
from lite_align.metrics.registry import Family, FamilyValues, Inputs, Metric, register_family

__all__ = ["EMBEDDING_FAMILY", "FAMILY"]

_ORDER = 100.0  # after the paper's measures (10..80) in every report
_DIGITS = {"distinct_classes": 2, "distinct_classes_embedding": 2, "vendi_ngram": 2, "vendi_embedding": 2}


def _metric(key: str, order: float) -> Metric:
    m = measure(key)
    return Metric(
        key,
        m.label,
        direction=1 if m.higher_is_more_diverse else -1,
        digits=_DIGITS.get(key, 3),
        order=order,
        agreement=not key.endswith("_relative"),  # ranks prompts as its raw score does
    )


_TEXT_METRICS = (
    *(_metric(key, _ORDER + i) for i, key in enumerate(TEXT_KEYS)),
    Metric(
        "ead_across_prompts",
        "EAD across prompts (first samples)",
        direction=1,
        order=_ORDER + len(TEXT_KEYS),
        hint="one figure over each prompt's first sample",
        interval=False,
        comparable=False,
        agreement=False,
    ),
)
_EMBEDDING_METRICS = tuple(_metric(key, _ORDER + 50 + i) for i, key in enumerate(EMBEDDING_KEYS))


def _text_family(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
    r = measure_set(sample_set, vocab_size=inputs.vocab_size, keys=TEXT_KEYS)
    return FamilyValues(r.figures(), per_prompt_by_id(r), r.extras())


def _embedding_family(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
    if inputs.embedder is None:
        raise ValueError("the embedding measures need an embedder")
    r = measure_set(sample_set, embedder=inputs.embedder, keys=EMBEDDING_KEYS)
    return FamilyValues({key: r.estimates[key] for key in r.keys}, per_prompt_by_id(r))


FAMILY = register_family(
    Family(
        "field",
        _TEXT_METRICS,
        needs=frozenset({"texts", "words"}),
        compute=_text_family,
        optional_needs=frozenset({"vocab_size"}),
        extra_keys=("ead_vocab_size", "ead_vocab_size_known"),
    )
)
EMBEDDING_FAMILY = register_family(
    Family("field_embedding", _EMBEDDING_METRICS, needs=frozenset({"texts", "embeddings"}), compute=_embedding_family)
)
