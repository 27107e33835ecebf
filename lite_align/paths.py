"""Where lite_align finds its project files and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The directory holding ``models.toml`` and ``prompts/``.

    The current directory wins when it holds a ``models.toml`` (a user's own registry);
    otherwise the checkout the package was installed from (an editable install).
    """
    cwd = Path.cwd()
    if (cwd / "models.toml").is_file() and (cwd / "prompts").is_dir():
        return cwd
    return PACKAGE_DIR.parent


def prompts_dir() -> Path:
    return project_root() / "prompts"


def cache_dir() -> Path:
    """``$LITE_ALIGN_CACHE`` or ``~/.cache/lite_align``."""
    env = os.environ.get("LITE_ALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lite_align"


def models_dirs() -> list[Path]:
    """Directories searched for registry entries given by file name, in order."""
    dirs: list[Path] = []
    env = os.environ.get("LITE_ALIGN_MODELS_DIR")
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs.append(project_root() / "models")
    dirs.append(cache_dir() / "models")
    return dirs
