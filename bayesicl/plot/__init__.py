"""Figures of docs/model.md#figures from a fit: phase diagram, posterior odds, transience, N*(D), posterior;
and of a population fit over configurations (`bayesicl.plot.population`).

>>> from bayesicl import plot
>>> sorted(plot.FIGURES)
['phase_diagram', 'posterior', 'posterior_odds', 'transience', 'transition_steps']
"""

from .figures import (DPI, FIGURES, declutter, phase_diagram, posterior, posterior_odds, run_effects,
                      strategy_phases, transience, transition_steps)
from .files import figures_for, save_all
from .population import (POPULATION_FIGURES, configuration_phase_diagrams, configuration_transitions,
                         covariate_trend, forest, plot_predicted_configuration, predicted_configuration,
                         save_population)

__all__ = ["DPI", "FIGURES", "declutter", "figures_for", "phase_diagram", "posterior", "posterior_odds",
           "run_effects", "save_all", "strategy_phases", "transience", "transition_steps",
           "POPULATION_FIGURES", "configuration_phase_diagrams", "configuration_transitions", "covariate_trend",
           "forest", "plot_predicted_configuration", "predicted_configuration", "save_population"]
