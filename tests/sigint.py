"""For the tests that press Ctrl-C on a child process."""

from __future__ import annotations

import signal


def ctrl_c_as_usual() -> None:
    """A ``preexec_fn`` for the child: a shell's background job ignores SIGINT (no job control), the
    child would inherit that and Python would then never raise KeyboardInterrupt; give SIGINT its
    usual meaning whatever the test runner was started from."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
