"""Typed results: the contract between the analysis and every report.

    analysis.analyse(...) -> Results --> to_json() -> results.json, the --json documents
                                     --> reports (terminal, Markdown, HTML, JSON)
    results.json (any version's) -> Results.from_json(...) -> reports

``Results.from_json(doc).to_json() == doc`` for every document this or an earlier version wrote:
each record keeps the order of the keys it was read with, and keys it does not know (a metric
registered by a newer version or a plug-in, a part such as ``explain``) as they were. A record made
by the analysis lays its keys out as the metric registry says (``metrics.registry``).

Figures keep their JSON values (``None`` where undefined); intervals are ``[lo, hi]`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lite_align.metrics.registry import is_extra_key, metric
from lite_align.stats import Estimate

__all__ = ["COUNT_KEYS", "DiversityRow", "RecoverRow", "Results", "number"]

COUNT_KEYS = ("n_prompts", "n_failed", "n_responses")
_ROW_KNOWN = frozenset({"label", *COUNT_KEYS, "ci", "n_duplicates", "failed_reasons"})


def number(x: float) -> float | None:
    """JSON has no NaN: an undefined figure is null."""
    return None if x is None or math.isnan(x) else float(x)


def _is_figure(key: str, value: Any) -> bool:
    if is_extra_key(key):
        return False
    if metric(key) is not None:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _ordered(parts: Mapping[str, Any], layout: Iterable[str]) -> dict[str, Any]:
    """``parts`` in ``layout``'s order, then any part the layout lacks."""
    out = {k: parts[k] for k in layout if k in parts}
    out.update({k: v for k, v in parts.items() if k not in out})
    return out


@dataclass(frozen=True)
class DiversityRow:
    """One sample set's within-prompt figures: ``figures`` (metric key -> mean) with intervals in
    ``ci``, the counts, and what failed. ``extra``: keys this version does not know."""

    label: str | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    ci: Mapping[str, Any] | None = None
    n_prompts: int | None = None
    n_failed: int | None = None
    n_responses: int | None = None
    n_duplicates: int | None = None
    failed_reasons: Mapping[str, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    layout: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        label: str,
        head: Mapping[str, Estimate],
        tail: Mapping[str, Estimate],
        *,
        n_prompts: int,
        n_failed: int,
        n_responses: int,
        n_duplicates: int,
        failed_reasons: Mapping[str, int],
        extra: Mapping[str, Any] | None = None,
        tail_layout: Iterable[str] | None = None,
    ) -> DiversityRow:
        """A row from estimates: ``head`` (the first family) before the counts, ``tail`` after;
        ``extra``: keys beside the figures that are not figures (a family's ``extra``, the
        agreement table), in ``tail_layout``'s order with the tail's figures (default: after them)."""
        both = {**head, **tail}
        layout = ["label", *head, *COUNT_KEYS, "ci", *(["n_duplicates"] if n_duplicates else [])]
        layout += ["failed_reasons", *(tail_layout if tail_layout is not None else [*tail, *(extra or {})])]
        return cls(
            label=label,
            figures={k: number(e.mean) for k, e in both.items()},
            ci={k: [number(e.lo), number(e.hi)] for k, e in both.items()},
            n_prompts=n_prompts,
            n_failed=n_failed,
            n_responses=n_responses,
            n_duplicates=n_duplicates or None,
            failed_reasons=dict(failed_reasons),
            extra=dict(extra or {}),
            layout=tuple(layout),
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DiversityRow:
        if isinstance(doc, DiversityRow):
            return doc
        figures = {k: v for k, v in doc.items() if k not in _ROW_KNOWN and _is_figure(k, v)}
        extra = {k: v for k, v in doc.items() if k not in _ROW_KNOWN and k not in figures}
        ci = doc.get("ci")
        return cls(
            label=doc.get("label"),
            figures=figures,
            ci=ci if isinstance(ci, Mapping) else None,
            n_prompts=doc.get("n_prompts"),
            n_failed=doc.get("n_failed"),
            n_responses=doc.get("n_responses"),
            n_duplicates=doc.get("n_duplicates"),
            failed_reasons=doc.get("failed_reasons"),
            extra={**extra, **({"ci": ci} if "ci" in doc and not isinstance(ci, Mapping) else {})},
            layout=tuple(doc),
        )

    def to_json(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        if self.label is not None:
            parts["label"] = self.label
        parts.update({k: v for k, v in self.figures.items()})
        for key in (*COUNT_KEYS, "n_duplicates"):
            value = getattr(self, key)
            if value is not None:
                parts[key] = value
        if self.ci is not None:
            parts["ci"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.ci.items()}
        if self.failed_reasons is not None:
            parts["failed_reasons"] = dict(self.failed_reasons)
        parts.update(self.extra)
        return _ordered(parts, self.layout)

    def get(self, key: str, default: Any = None) -> Any:
        """A figure or a field by its JSON key (reports read rows by key)."""
        return self.to_json().get(key, default)

    def interval(self, key: str) -> Any:
        return self.ci.get(key) if self.ci is not None else None


@dataclass(frozen=True)
class RecoverRow:
    """One candidate's recoverability: per similarity key, its ``CrossResult`` JSON (cross,
    baseline, ratio and intervals); the verdict; what failed in it, the reference and a baseline."""

    similarities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    verdict: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    layout: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RecoverRow:
        if isinstance(doc, RecoverRow):
            return doc
        sims = {k: v for k, v in doc.items() if isinstance(v, Mapping) and "ratio" in v}
        extra = {k: v for k, v in doc.items() if k not in sims and k != "verdict"}
        verdict = doc.get("verdict")
        return cls(sims, verdict if isinstance(verdict, str) else None, extra, tuple(doc))

    def to_json(self) -> dict[str, Any]:
        parts: dict[str, Any] = {k: dict(v) for k, v in self.similarities.items()}
        if self.verdict is not None:
            parts["verdict"] = self.verdict
        parts.update(self.extra)
        return _ordered(parts, self.layout)

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


def _rows(doc: Any, kind: type[DiversityRow] | type[RecoverRow]) -> dict[str, Any] | None:
    if not isinstance(doc, Mapping):
        return None
    if not all(isinstance(v, (Mapping, kind)) for v in doc.values()):
        return None
    return {str(k): kind.from_json(v) for k, v in doc.items()}


@dataclass(frozen=True)
class Results:
    """Everything a report shows: the diversity rows (set name -> row), recoverability rows, one
    example prompt, the finding sentence, and later parts (``explain``, ...) as plain JSON."""

    diversity: Mapping[str, DiversityRow] = field(default_factory=dict)
    recover: Mapping[str, RecoverRow] | None = None
    example: Mapping[str, Any] | None = None
    finding: str | None = None
    parts: Mapping[str, Any] = field(default_factory=dict)
    layout: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, doc: Results | Mapping[str, Any]) -> Results:
        """The typed view of a results document (a Results is returned as it is)."""
        if isinstance(doc, Results):
            return doc
        diversity = _rows(doc.get("diversity"), DiversityRow)
        recover = _rows(doc.get("recover"), RecoverRow) if "recover" in doc else None
        typed = {"diversity"} if diversity is not None and "diversity" in doc else set()
        if recover is not None:
            typed.add("recover")
        finding = doc.get("finding")
        if "finding" in doc and isinstance(finding, str):
            typed.add("finding")
        example = doc.get("example")
        if "example" in doc and (example is None or isinstance(example, Mapping)):
            typed.add("example")
        return cls(
            diversity=diversity if diversity is not None and "diversity" in typed else {},
            recover=recover,
            example=example if "example" in typed else None,
            finding=finding if "finding" in typed else None,
            parts={k: v for k, v in doc.items() if k not in typed},
            layout=tuple(doc),
        )

    def to_json(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        if self.diversity or "diversity" in self.layout:
            parts["diversity"] = {k: r.to_json() for k, r in self.diversity.items()}
        if self.recover is not None:
            parts["recover"] = {k: r.to_json() for k, r in self.recover.items()}
        if "example" in self.layout or self.example is not None:
            parts["example"] = dict(self.example) if self.example is not None else None
        if self.finding is not None:
            parts["finding"] = self.finding
        parts.update(self.parts)
        return _ordered(parts, self.layout)

    def with_part(self, key: str, value: Any) -> Results:
        """These results with a further part (e.g. ``explain``) added after the others."""
        return replace(self, parts={**self.parts, key: value}, layout=(*self.layout, key))

    def without(self, *keys: str) -> Results:
        """These results without the named parts (e.g. ``format``)."""
        return replace(self, parts={k: v for k, v in self.parts.items() if k not in keys})

    def get(self, key: str, default: Any = None) -> Any:
        """A part by its JSON key, typed where it is typed (``diversity``, ``recover``)."""
        if key == "diversity":
            return self.diversity if (self.diversity or "diversity" in self.layout) else default
        if key == "recover":
            return self.recover if self.recover is not None else default
        if key == "example":
            return self.example if self.example is not None else default
        if key == "finding":
            return self.finding if self.finding is not None else default
        return self.parts.get(key, default)
