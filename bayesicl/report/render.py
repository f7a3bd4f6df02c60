"""The report page of any fit: one fit's page (`bayesicl.report.page`) or, for a fit over
several configurations, the population page (`bayesicl.report.population`).

This module sits above both page modules, so that neither imports the other to dispatch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..atomic import write_text
from ..plot.population import is_population
from .page import FILE_NAME, STYLE, render_fit_report
from .population import render_population_report


def render_report(fit, figures: Mapping[str, bytes] | None = None) -> str:
    """The report page of a `bayesicl.inference.FitResult` as one HTML string.

    `figures` maps a figure name (``plot.FIGURES``) to its PNG bytes, e.g. the files
    `plot.save_all` just wrote; without it the figures are drawn here. The page has no
    scripts and loads nothing: images are embedded as base64 data.

    Example: ``write_report(bayesicl.load_fit("fit-out"), "fit-out/report.html")``.
    A population fit over configurations gets `bayesicl.report.population`'s page.
    """
    if is_population(fit):
        return render_population_report(fit, figures, style=STYLE)
    return render_fit_report(fit, figures)


def write_report(fit, path: str | os.PathLike, figures: Mapping[str, bytes] | None = None) -> Path:
    """Write `render_report(fit, figures)` atomically to `path` (a file, or a folder to hold
    report.html); returns the file's path."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    write_text(path, render_report(fit, figures))
    return path
