"""`bayesicl plot FIT --out DIR`: the figures of a saved fit folder."""

from __future__ import annotations

import argparse


def plot_main(args: argparse.Namespace) -> int:
    from ..fit import load_fit
    from .figures import save_all

    fit = load_fit(args.fit)
    for path in save_all(fit, args.out or args.fit, pdf=args.pdf):
        print(path)
    return 0
