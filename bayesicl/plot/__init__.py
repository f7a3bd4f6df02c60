"""Figures of docs/model.md#figures from a fit: phase diagram, posterior odds, transience, N*(D), posterior.

>>> from bayesicl import plot
>>> sorted(plot.FIGURES)
['phase_diagram', 'posterior', 'posterior_odds', 'transience', 'transition_steps']
"""

from .figures import (DPI, FIGURES, declutter, figures_for, phase_diagram, posterior, posterior_odds,
                      run_effects, save_all, strategy_phases, transience, transition_steps)

__all__ = ["DPI", "FIGURES", "declutter", "figures_for", "phase_diagram", "posterior", "posterior_odds",
           "run_effects", "save_all", "strategy_phases", "transience", "transition_steps"]
