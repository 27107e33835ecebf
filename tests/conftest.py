"""Shared fixtures: tiny random-weight GGUF models, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama


@pytest.fixture(scope="session")
def tiny_base_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama-architecture base model (no chat template), ~0.5 MB, loads in milliseconds."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-models") / "tiny-base.gguf", chat=False, seed=0)


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with <|user|>/<|assistant|>/<|end|> control tokens and a jinja chat template."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-models") / "tiny-chat.gguf", chat=True, seed=1)
