"""The registry as rows for `lite-align models`: presence, size and sha256 of every entry, and
whether `lite-align models pull` fetched it and the file still matches models.lock."""

from __future__ import annotations

from typing import Any

from .generation import backend
from .gguf_check import sha256_file
from .lock import lock_state
from .registry import install_hint, load_registry, locate, package_dir, resolve


def model_rows(registry_path: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:

    reg = load_registry(registry_path)
    rows = []
    for spec in reg.models.values():
        local = backend(spec.backend).local_file
        path = locate(spec) if local else None
        row: dict[str, Any] = {
            "name": spec.name,
            "role": spec.role,
            "family": spec.family,
            "params": spec.params,
            "quant": spec.quant,
            "license": spec.license,
            "url": spec.url,
            "source": spec.source,
            "chat_template": spec.chat_template,
            "present": path is not None,
            "path": str(path) if path else None,
            "size": None,
            "sha256": None,
            "repo": spec.repo or None,
        }
        if spec.assemble and path is None:
            row["present"] = package_dir(spec.package) is not None
            row["note"] = "assembled from its chunk packages on first use"
        if path is not None:
            row["size"] = path.stat().st_size
            row["sha256"] = sha256_file(path)
        if local:
            row.update(lock_state(reg.path, spec.name, path, row["sha256"]))
        else:
            row.update({"pulled": None, "locked": None})
        if not row["present"]:
            row["hint"] = install_hint(spec)
        elif row["locked"] == "mismatch":
            row["hint"] = f"the file no longer matches models.lock: lite-align models pull {spec.name}"
        rows.append(row)
    pairs = [{"name": p.name, "base": p.base, "chat": p.chat, "note": p.note} for p in reg.pairs.values()]
    return rows, pairs


def prepare_packaged(registry_path: str | None = None) -> list[str]:
    """Assemble every model whose chunk packages are installed; returns the names assembled."""
    reg = load_registry(registry_path)
    done = []
    for spec in reg.models.values():
        if spec.assemble and locate(spec) is None and package_dir(spec.package) is not None:
            resolve(spec)
            done.append(spec.name)
    return done
