"""Metrics, one family per module: ``lexical`` (within-prompt word bags, lengths, formats),
``cross`` (cross-model similarity and recovery ratio), ``stance`` (judge stance labels).

Each takes plain data (``SampleSet``, label lists) and returns a frozen result with ``to_json()``.
"""
