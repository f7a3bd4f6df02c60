"""`bayesicl check RUNS`: validate every logged run below a folder and list what is wrong.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     check_runs(tmp)   # doctest: +ELLIPSIS
['...: no runs found (no run.json in it or below it)']
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import BayesiclError
from .reader import _scan, find_runs, skipped_folders


def check_runs(directory: str | Path) -> list[str]:
    """Human-readable problems of every run at or below `directory`, one line each (naming
    the file); an empty list means every run opens cleanly. Never raises for data problems."""
    directory = Path(directory)
    try:
        paths = find_runs(directory)
    except BayesiclError as error:
        return [str(error)]
    if not paths:
        return [f"{directory}: no runs found (no run.json in it or below it)"]
    problems = skipped_folders(directory)
    for path in paths:
        try:
            problems.extend(_scan(path, strict=False)[1])
        except Exception as error:  # a bug must not hide the other runs' problems
            problems.append(f"{path}: could not be checked: {type(error).__name__}: {error}")
    return [" ".join(p.split()) for p in problems]


def check_main(args: argparse.Namespace | Sequence[str]) -> int:
    """Command-line entry: print "OK: N runs, K checkpoints" (exit 0) or one line per problem
    on stderr (exit 1). `args` has `.runs` (a folder, or a list of folders) or is an argv list."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="bayesicl check")
        parser.add_argument("runs", nargs="+")
        args = parser.parse_args(list(args))
    folders = [args.runs] if isinstance(args.runs, (str, Path)) else list(args.runs)
    problems = [p for folder in folders for p in check_runs(folder)]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    runs = [path for folder in folders for path in find_runs(folder)]
    checkpoints = sum(len(list((path / "checkpoints").glob("*.nc"))) for path in runs)
    print(f"OK: {len(runs)} runs, {checkpoints} checkpoints")
    return 0
