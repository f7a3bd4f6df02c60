"""The headline numbers of a population fit as plain text: what `bayesicl fit RUNS/` (several
configurations) and `bayesicl demo --task urns-grid` print.
"""

from __future__ import annotations

import numpy as np

from ..plot.population import short_name

THETA_LABELS = {"logit_alpha": "logit α", "log_beta": "log β", "log_gamma_ref": "log γ̃"}


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if not np.isfinite(value):
        return "∞" if value > 0 else "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def _interval(cell) -> str:
    """ "mean [low, high]" of a summary cell.

    >>> _interval({"mean": 0.5, "low": 0.25, "high": 1.0})
    '0.5 [0.25, 1]'
    """
    if not cell:
        return "n/a"
    return f"{_cell(cell.get('mean'))} [{_cell(cell.get('low'))}, {_cell(cell.get('high'))}]"


def format_population_report(result) -> str:
    """The headline numbers of a population fit as plain text: diagnostics, μ, B, τ, every
    configuration's (α, β, γ) and correlation, coverage, and N*(D) per configuration."""
    summary = result.summary()
    lines = [f"task {summary.get('task')}  pool {summary.get('pool')}  method {summary.get('method')}  "
             f"configurations {len(result.configurations)}  runs {int(result.configurations['n_runs'].sum())}"]
    diag = summary.get("diagnostics") or {}
    if diag.get("r_hat_max") is not None:
        lines.append(f"  r_hat max {diag['r_hat_max']:.4f}, ESS bulk min {_cell(diag.get('ess_bulk_min'))}, "
                     f"divergences {diag.get('divergences')}")
    population = summary.get("population")
    if population:
        names = (population.get("covariates") or {}).get("names") or []
        lines.append("population (θ = logit α, log β, log γ̃ at N_ref; x = standardized log covariates; "
                     "mean [90% interval]):")
        for key, label in (("mu", "mu"), ("tau", "tau")):
            cells = [f"{THETA_LABELS.get(p, p)} {_interval(c)}" for p, c in (population.get(key) or {}).items()]
            lines.append(f"  {label:<18} " + "   ".join(cells))
            if key == "mu":
                for n in names:
                    cells = [f"{THETA_LABELS.get(p, p)} {_interval(c.get(n))}"
                             for p, c in (population.get("B") or {}).items()]
                    lines.append(f"  {'B ' + n:<18} " + "   ".join(cells))
    metrics = summary.get("metrics") or {}
    lines.append("configurations (posterior mean [90% interval]; correlation of expected vs observed w_M, ID):")
    width = max(len(short_name(n)) for n in result.configurations["configuration"])
    for row in result.configurations.to_dict(orient="records"):
        name = row["configuration"]
        params = "  ".join(f"{p} {_interval({'mean': row[p], 'low': row.get(p + '_low'), 'high': row.get(p + '_high')})}"
                           for p in ("alpha", "beta", "gamma"))
        corr = [((metrics.get(name) or {}).get(s) or {}).get("id", {}).get("correlation") for s in ("fit", "heldout")]
        lines.append(f"  {short_name(name):<{width}}  runs {row['n_runs']:<2} {params}  "
                     f"corr fit {_cell(corr[0])} held-out {_cell(corr[1])}")
    coverage = (summary.get("coverage") or {}).get("overall") or {}
    if coverage:
        cells = [f"{part} {split.upper()} {coverage[part][split]:.2f}" for part in ("fit", "heldout")
                 for split in ("id", "ood") if (coverage.get(part) or {}).get(split) is not None]
        lines.append("observed weights inside their 90% predictive interval, all configurations: " + ", ".join(cells))
    lines += transition_table_lines(result)
    return "\n".join(lines)


def transition_table_lines(result) -> list[str]:
    """N*(D) per configuration (columns) and diversity (rows): the posterior median, * beyond
    the last trained step; the 90% intervals are in transitions.csv and report.html."""
    steps = result.transitions
    names = list(result.configurations["configuration"])
    heads = [short_name(n) for n in names]
    width = max(9, *(len(h) for h in heads))
    lines = ["predicted transition steps N*(D) (posterior median; * beyond the last trained step; "
             "90% intervals in transitions.csv):",
             "  " + f"{'D':>6}  " + "  ".join(f"{h:>{width}}" for h in heads)]
    for diversity in sorted(steps["diversity"].unique()):
        cells = []
        for name in names:
            row = steps[(steps["configuration"] == name) & (steps["diversity"] == diversity)]
            if row.empty:
                cells.append(f"{'':>{width}}")
                continue
            value = float(row["transition_step"].iloc[0])
            star = "*" if bool(row["extrapolated"].iloc[0]) else ""
            cells.append(f"{_cell(value) + star:>{width}}")
        lines.append("  " + f"{int(diversity):>6}  " + "  ".join(cells))
    return lines
