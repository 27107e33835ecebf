"""Compression ratio of a prompt's samples (Shaib et al. 2024, "Standardizing the Measurement of
Text Diversity"): the size of the samples joined by single spaces, in UTF-8 bytes, divided by
the size of that text compressed. Repeated wording compresses well, so a higher ratio means less
diverse samples.

- ``gzip``: DEFLATE at level 9 in a gzip container (10-byte header without a file name, 8-byte
  trailer), as ``gzip.compress`` writes it. The authors' package compresses the text twice (a
  gzip stream written into a gzip file) and so reports slightly lower ratios; we compress once,
  as the measure is defined (docs/method.md §9.4 has the comparison).
- ``xz``: LZMA2 at preset 6 (xz's default) in an xz container with a CRC64 check, as
  ``lzma.compress`` writes it, except that the dictionary is sized to the input (a power of two,
  at least 4 KiB) instead of 8 MiB: a dictionary at least as large as the input changes nothing
  in the output's size, and preparing an 8 MiB one costs about 2 ms per call, ten times the
  compression itself. Tests hold the sizes equal to the default's on the whole paper release.

    >>> compression_ratio(["the cat sat on the mat"] * 5, "gzip") > compression_ratio(["a b"], "gzip")
    True
"""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Sequence

__all__ = ["ALGORITHMS", "compressed_size", "compression_ratio", "joined_bytes"]

ALGORITHMS = ("gzip", "xz")
_XZ_PRESET = 6
_XZ_MIN_DICT = 1 << 12


def joined_bytes(texts: Sequence[str]) -> bytes:
    """The samples joined by single spaces, as UTF-8 (what is compressed); a lone surrogate (text
    decoded from broken JSON escapes) is kept as its three bytes rather than refused."""
    return " ".join(texts).encode("utf-8", errors="surrogatepass")


def _xz_dict_size(n: int) -> int:
    size = _XZ_MIN_DICT
    while size < n:
        size <<= 1
    return size


def compressed_size(data: bytes, algorithm: str) -> int:
    """Bytes of ``data`` compressed by ``algorithm`` ("gzip" or "xz")."""
    if algorithm == "gzip":
        return len(gzip.compress(data, compresslevel=9, mtime=0))
    if algorithm == "xz":
        filters = [{"id": lzma.FILTER_LZMA2, "preset": _XZ_PRESET, "dict_size": _xz_dict_size(len(data))}]
        return len(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters))
    raise ValueError(f"unknown compression algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def compression_ratio(texts: Sequence[str], algorithm: str = "gzip") -> float:
    """Original size / compressed size of the samples joined by spaces (higher = less diverse)."""
    data = joined_bytes(texts)
    return len(data) / compressed_size(data, algorithm)
