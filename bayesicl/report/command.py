"""`bayesicl report FIT [--out FILE]`: write the report page of a fit folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inference import load_fit
from .page import FILE_NAME
from .render import write_report


def report_main(args: argparse.Namespace) -> int:
    """The `bayesicl report` verb: draws the figures from the fit and writes one HTML file."""
    fit = load_fit(args.fit)
    path = write_report(fit, args.out or Path(args.fit) / FILE_NAME)
    print(path)
    return 0
