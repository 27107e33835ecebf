"""Metrics, one family per module, each registered in ``metrics.registry`` when imported:
``lexical`` (within-prompt word bags, lengths, formats), ``embedding`` (embedding diversity, and the
embedding cosine and BERTScore-style similarities), ``cross`` (cross-model similarity, the recovery
ratio and word-bag Jaccard similarity), ``stance`` (judge stance labels), and ``field``: the
field's measures of issue 14 (computed by ``measures`` and the modules it draws on).

Each takes plain data (``SampleSet``, label lists) and returns a frozen result with ``to_json()``.
Importing this package imports every registered metric file: the registry is then complete.
"""

from lite_align.metrics import cross, embedding, field, lexical, registry

__all__ = ["cross", "embedding", "field", "lexical", "registry"]
