"""Which figures a fit has, and writing them to files: one fit's (`bayesicl.plot.figures`) or a
population fit's over configurations (`bayesicl.plot.population`).

This module sits above both figure modules, so that neither imports the other to dispatch.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib.pyplot as plt

from .figures import DPI, fit_figures, save_fit_figures
from .population import is_population, population_figures_for, save_population


def figures_for(fit: Any) -> dict[str, Any]:
    """The figures `fit` has: all of `FIGURES`, less the posterior for a MAP fit, plus
    `strategy_phases` for a fit of more than two strategies; for a population fit over
    configurations, `bayesicl.plot.population.population_figures_for`."""
    if is_population(fit):
        return population_figures_for(fit)
    return fit_figures(fit)


def draw_figures(fit: Any) -> dict[str, bytes]:
    """PNG bytes of every figure that `fit` has (`figures_for`), drawn as `save_all` draws them."""
    out = {}
    for name, draw in figures_for(fit).items():
        figure = draw(fit)
        buffer = io.BytesIO()
        figure.savefig(buffer, dpi=DPI, format="png")
        plt.close(figure)
        out[name] = buffer.getvalue()
    return out


def save_all(fit: Any, out: str, pdf: bool = False) -> list[str]:
    """Write the figures of `fit` (`figures_for`) as PNG (and PDF) into `out`; returns the
    paths written. A posterior figure left by an earlier NUTS fit in `out` is removed. A
    population fit's figures are `bayesicl.plot.population.save_population`'s."""
    if is_population(fit):
        return save_population(fit, out, pdf=pdf)
    return save_fit_figures(fit, out, pdf=pdf)
