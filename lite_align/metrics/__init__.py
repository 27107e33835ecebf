"""Metrics, one family per module, each registered in ``metrics.registry`` when imported:
``lexical`` (within-prompt word bags, lengths, formats), ``embedding`` (embedding diversity, and the
embedding cosine and BERTScore-style similarities), ``cross`` (cross-model similarity, the recovery
ratio and word-bag Jaccard similarity), ``stance`` (judge stance labels), and the issue-14
measures (``measures`` and the modules it draws on; not registered yet).

Each takes plain data (``SampleSet``, label lists) and returns a frozen result with ``to_json()``.
Importing this package imports every registered metric file: the registry is then complete.
"""

from lite_align.metrics import cross, embedding, lexical, registry

__all__ = ["cross", "embedding", "lexical", "registry"]
