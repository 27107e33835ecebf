"""Test fakes that honour the real interfaces (study.Generator, the embedder's embed())."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lite_align.engine import GenerationRequest, GenerationResult


class FakeGenerator:
    """Answers every request deterministically from (model name, prompt, seed); records calls."""

    def __init__(self, name: str, log: list[tuple[str, Any]], n_ctx: int | None = None) -> None:
        self.name = name
        self.n_ctx = n_ctx
        self.log = log
        self.closed = False

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + (
            "<|assistant|>" if add_generation_prompt else ""
        )

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(text.encode())

    @property
    def timings(self) -> dict[str, float]:
        return {"prompt": 0.0, "decode": 0.0, "sample": 0.0, "bookkeeping": 0.0}

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for req in requests:
            self.log.append((self.name, req))
            for i, seed in enumerate(req.seeds):
                h = hashlib.sha256(f"{self.name}|{req.prompt}|{seed}|{req.params.temperature}".encode()).hexdigest()
                words = [f"w{int(h[j : j + 2], 16) % 12}" for j in range(0, 16, 2)]
                yield GenerationResult(
                    req.key, i, seed, f"{self.name} says " + " ".join(words), 9, len(req.prompt), "stop", 0.01
                )

    def close(self) -> None:
        self.closed = True


class FakeEmbedder:
    """Vectors from letter counts: deterministic, and similar texts get similar vectors."""

    name = "fake"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n == 0, 1, n)
