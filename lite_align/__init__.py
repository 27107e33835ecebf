"""lite_align: the base-vs-aligned diversity study of Lake, Choi & Durrett (NAACL 2025), offline.

The library works without the CLI: registry -> prompts -> engine -> store -> metrics -> report.
Heavy dependencies (llama_cpp, onnxruntime, rich) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
