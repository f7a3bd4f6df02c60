"""Logged runs (docs/run-format.md): the versioned on-disk store a training loop writes checkpoint by
checkpoint (`RunWriter`) and the fit reads back, validated (`open_run`, `open_runs`).

The format ("bayesicl-run", version 1) is described in docs/run-format.md; a run opens with
plain xarray, without bayesicl. Nothing here imports torch.

>>> from bayesicl.runs import FORMAT, VERSION
>>> FORMAT, VERSION
('bayesicl-run', 1)
"""

from __future__ import annotations

from .check import check_runs
from .format import FORMAT, VERSION
from .reader import Run, find_runs, open_run, open_runs
from .writer import RunWriter

__all__ = ["RunWriter", "Run", "open_run", "open_runs", "find_runs", "check_runs", "FORMAT", "VERSION"]
