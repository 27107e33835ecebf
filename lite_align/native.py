"""Load llama.cpp's native library before numpy's, and set OpenMP's wait policy before either.

Why the order: on an NVIDIA H200 (CUDA 13, Python 3.12, numpy 2.5, llama-cpp-python 0.3.36 built
with ``-DGGML_CUDA=on``) the first model load crashed the interpreter (a segmentation fault in
``llama_model_load_from_file``, with no layer offloaded too) whenever numpy had been imported before
``llama_cpp``; with ``llama_cpp`` imported first, the same load ran. The cause was not established;
two native runtimes disagreeing is the likely one. A CPU build runs in either order. So every
command that opens a model calls ``load_llama_first`` before anything imports numpy, and the engine
warns a library user whose process loaded them the other way round on a GPU build
(``late_load_warning``).

Why the policy: llama.cpp's OpenMP workers spin between steps unless ``OMP_WAIT_POLICY=PASSIVE`` is
set, and OpenMP reads it once, when its runtime loads with llama.cpp. At one thread there are no
workers, so the setting changes nothing there.

This module imports neither numpy nor the rest of lite_align: importing it must not load numpy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

LIBRARY_MODULE = "llama_cpp.llama_cpp"  # the llama_cpp module that loads the shared library


def quiet_openmp() -> None:
    """Keep OpenMP's idle workers from spinning (a value the user set is kept)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_llama_first(quiet: bool = True) -> bool:
    """Import llama_cpp now, before numpy, after ``quiet_openmp`` unless ``quiet`` is False.

    False when llama_cpp is not installed or its library does not load; the engine says why when a
    model is opened, so nothing is raised here."""
    if quiet:
        quiet_openmp()
    try:
        import llama_cpp  # noqa: F401  (loaded for its side effect: the native library, first)
    except (ImportError, OSError):
        return False
    return True


def loaded_after_numpy(modules: Iterable[str] | None = None) -> bool:
    """Whether numpy was imported before llama.cpp's library (``modules`` in import order; default:
    this process's ``sys.modules``, which keeps that order).

    >>> loaded_after_numpy(["numpy", "llama_cpp.llama_cpp"]), loaded_after_numpy(["llama_cpp.llama_cpp", "numpy"])
    (True, False)
    >>> loaded_after_numpy(["numpy"]), loaded_after_numpy([])
    (True, False)
    """
    order = {name: i for i, name in enumerate(sys.modules if modules is None else modules)}
    if "numpy" not in order:
        return False
    return order.get(LIBRARY_MODULE, len(order)) > order["numpy"]


def late_load_warning(after_numpy: bool, gpu_build: bool) -> str | None:
    """The warning for a GPU build whose library loaded after numpy; None otherwise.

    >>> late_load_warning(True, False) is None, late_load_warning(False, True) is None
    (True, True)
    """
    if not (after_numpy and gpu_build):
        return None
    return (
        "llama_cpp was loaded after numpy in this process, on a GPU build of llama.cpp: on a CUDA build "
        "this order crashed the first model load. Import llama_cpp (or call "
        "lite_align.native.load_llama_first()) before numpy, or use the lite-align command, which does."
    )
