"""The one exception type bayesicl raises for bad input.

Every user-facing error is a `BayesiclError`: a `ValueError` whose message is one line that
names the offending file or argument and what is wrong with it. The command line prints that
line and exits 1; the library lets it propagate.
"""

from __future__ import annotations


class BayesiclError(ValueError):
    """Bad input: a wrong shape, NaN, unknown task, impossible parameter or corrupt file."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class BayesiclWarning(UserWarning):
    """Something the user should know that does not stop the work (the command line prints
    it as one line: "bayesicl VERB: warning: ...")."""
