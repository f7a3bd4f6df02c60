"""Figures of SPEC §10 from a fit: phase diagram, posterior odds, transience, N*(D), posterior.

>>> from bayesicl import plot
>>> sorted(plot.FIGURES)
['phase_diagram', 'posterior', 'posterior_odds', 'transience', 'transition_steps']
"""

from .figures import (FIGURES, phase_diagram, posterior, posterior_odds, save_all,
                      transience, transition_steps)

__all__ = ["FIGURES", "phase_diagram", "posterior", "posterior_odds", "save_all", "transience",
           "transition_steps"]
