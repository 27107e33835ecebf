"""Errors a user can meet. Each message is one line that names the file, line or option and says
what to do next; the CLI prints it as ``error: <message>`` and exits non-zero, never a traceback."""

from __future__ import annotations


class LiteAlignError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split("\n"))


class RegistryError(LiteAlignError):
    """models.toml is malformed, or names something that does not exist."""


class ModelNotFoundError(LiteAlignError):
    """A model name is unknown, or its file is missing."""


class ModelFileError(LiteAlignError):
    """A model file exists but is not a usable GGUF (truncated, corrupted, not GGUF)."""


class PromptFileError(LiteAlignError):
    """A prompt set is malformed or empty."""


class SamplesFileError(LiteAlignError):
    """A samples file (ours or the paper's) is malformed, empty, or does not match its reference."""


class RunDirError(LiteAlignError):
    """A run directory cannot be written, or holds a run with different settings."""


class ConfigError(LiteAlignError):
    """A command-line option or setting is invalid."""


class MissingDependencyError(LiteAlignError):
    """An optional dependency is not installed; the message says which ``pip install`` fixes it."""


class GenerationError(LiteAlignError):
    """llama.cpp failed while generating (context too small, decode failure)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler: a run stops as on Ctrl-C (every
    finished sample kept, the manifest marked interrupted) and exits 128 + 15."""

    exit_code = 143


class DownloadError(LiteAlignError):
    """A model could not be pulled from the hub (offline, refused, not found, interrupted, corrupted)."""
