"""`bayesicl plot FIT --out DIR`: the figures of a saved fit folder."""

from __future__ import annotations

import argparse

from ..inference import load_fit
from .files import save_all


def plot_main(args: argparse.Namespace) -> int:
    """The `bayesicl plot` verb: the figures of a fit folder, as PNG (and PDF)."""
    fit = load_fit(args.fit)
    for path in save_all(fit, args.out or args.fit, pdf=args.pdf):
        print(path)
    return 0
