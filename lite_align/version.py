"""The version of lite_align (the package exports it as ``lite_align.__version__``)."""

__version__ = "0.1.0"
