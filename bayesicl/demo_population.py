"""`bayesicl demo --task urns-grid`: the population fit of the shipped configuration grid.

The grid (data/runs/urns-grid, data/README.md) holds urns runs of several configurations
(MLP width × context length); the demo fits them with partial pooling
(`bayesicl.inference.fit_population`), writes the fit folder, its figures and report.html, and
prints the population parameters, every configuration's (α, β, γ) and N*(D), and how to run
the leave-one-configuration-out validation.
"""

from __future__ import annotations

from pathlib import Path

from .commands.population import run_population_fit, scan_configurations

#: Shipped runs folders that hold several configurations: the demo fits them as a population.
POPULATION_TASKS = ("urns-grid",)
#: Sampler of the population demo: on the shipped grid r̂ 1.0078, bulk ESS ≥ 679, 4 divergences,
#: 63 leapfrog steps per draw (docs/model.md#population-model).
DEMO_SAMPLER = {"num_chains": 4, "num_samples": 500, "num_warmup": 500}


def run_population_demo(runs, out, seed: int = 0, echo=print, note=None, **sampler):
    """Fit the configurations in `runs` with partial pooling, write the fit folder, its
    figures and report.html into `out` and print the headline numbers, as `bayesicl fit RUNS/`
    does (`bayesicl.commands.population.run_population_fit`, with `DEMO_SAMPLER`); then
    say how to run the leave-one-configuration-out validation. Returns the result."""
    sampler = {**DEMO_SAMPLER, **sampler}
    count, varying = scan_configurations(runs)
    result = run_population_fit(runs, Path(out), count, varying, pool="partial", covariates=None, method="nuts",
                                strategies=None, holdout=0.2, prior_override=None, cutoff="paper", seed=seed,
                                num_chains=sampler["num_chains"], num_samples=sampler["num_samples"],
                                num_warmup=sampler["num_warmup"], effects=None, echo=echo, warn=echo, note=note)
    echo(cross_validation_line(runs))
    return result


def cross_validation_line(runs) -> str:
    """How to run the leave-one-configuration-out validation of `runs` (a separate command:
    it refits the population once per configuration and pooling choice)."""
    return ("leave-one-configuration-out validation (partial vs none vs full; refits every configuration, "
            f"slower than this demo): bayesicl cross-validate {runs} --by config --out cv/ "
            "(time and table on the shipped grid: README.md#configurations-partial-pooling)")
