"""``python -m lite_align``: the same command line as ``lite-align``."""

from lite_align.cli import main

if __name__ == "__main__":
    main()
