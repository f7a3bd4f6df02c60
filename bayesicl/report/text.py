"""The headline numbers of a fit as plain text: what `bayesicl fit` and `bayesicl demo` print.

The family's metrics are those its spec names (`FamilySpec.paper_metrics`, the metrics the
paper reports besides the correlation, docs/model.md#metrics).
"""

from __future__ import annotations

import numpy as np

from .. import observe, rational
from ..families import FAMILIES
from ..strategies import weight_groups

METRIC_LABELS = {"tvd": "TVD", "spearman": "Spearman", "r2": "R²", "mse": "MSE", "agreement": "agreement",
                 "kl": "KL"}


def format_report(result) -> str:
    """The headline numbers of a fit as a short plain-text report."""
    summary = result.summary()
    identified = summary.get("identified", True)
    lines = []
    if not identified:
        lines += ["!" * 78, "FIT NOT IDENTIFIED: these data do not determine (alpha, beta, gamma); the numbers",
                  "below restate the priors/starting point, not a result (see the guards).", "!" * 78]
    lines.append(f"task {summary['task']}  method {summary['method']}  cutoff N_0 = {summary['cutoff_step']}  "
                 f"conditions fit/held-out = {summary['n_conditions']['fit']}/{summary['n_conditions']['heldout']}"
                 f"  identified: {'yes' if identified else 'NO'}  K convention: "
                 f"{summary.get('complexity_convention', 'bayesicl')}")
    level = summary.get("interval_level", 0.9)
    for name in ("alpha", "beta", "gamma"):
        p = summary["params"][name]
        interval = ("" if p.get("low") is None else f"  {level:.0%} interval [{p['low']:.4g}, {p['high']:.4g}]")
        point = f"  (MAP {p['map']:.4g})" if p.get("map") is not None and p.get("low") is not None else ""
        lines.append(f"  {name:<5} = {p['mean']:.4g}{interval}{point}")
    diag = summary.get("diagnostics") or {}
    if diag.get("r_hat_max") is not None:
        lines.append(f"  r_hat max {diag['r_hat_max']:.4f}, ESS bulk min {diag['ess_bulk_min']:.0f}, "
                     f"divergences {diag['divergences']}")
    effects = summary.get("effects") or {}
    if effects.get("sigma_run"):
        sigma = effects["sigma_run"]
        lines.append(f"  run effects ({effects['kind']}): sigma_run = {sigma['mean']:.3g} "
                     f"[{sigma['low']:.3g}, {sigma['high']:.3g}] in log-odds"
                     + (f", trend lag-1 correlation {effects['trend_corr']['mean']:.2f}" if effects.get("trend_corr") else ""))
    coverage = summary.get("coverage")
    if coverage:
        cells = [f"{part} {split.upper()} {coverage[part][split]:.2f}" for part in ("fit", "heldout")
                 for split in ("id", "ood") if coverage[part][split] is not None]
        lines.append(f"observed weights inside their {level:.0%} predictive interval: " + ", ".join(cells))
    elpd = summary.get("elpd")
    if elpd:
        cells = [f"{split.upper()} {elpd[split]['elpd']:.1f} ± {elpd[split]['se']:.1f}" for split in ("id", "ood")
                 if elpd[split]["elpd"] is not None and elpd[split]["se"] is not None]
        if cells:
            lines.append("held-out log predictive density (elpd ± se): " + ", ".join(cells))
    if identified:
        lines.append("correlation of the expected vs observed M-weight:")
        for part in ("fit", "heldout", "all"):
            cells = []
            for split in ("id", "ood"):
                value = (summary["metrics"].get(part) or {}).get(split, {}).get("correlation")
                cells.append(f"{split.upper()} {value:.3f}" if isinstance(value, (int, float)) else f"{split.upper()} n/a")
            lines.append(f"  {part:<8} " + "   ".join(cells))
        lines += family_metrics_report(summary)
    else:
        lines.append("correlations withheld: the fit is not identified (they would describe the prior)")
    shown = []
    for row in summary.get("transition_steps") or []:
        n = row["transition_step"]
        text = ("∞" if n == "inf" else "n/a" if n is None else "0" if n == 0 else f"{n:,.0f}")
        shown.append(f"D={int(row['diversity'])}: {text}" + ("*" if row.get("extrapolated") else ""))
    what = "posterior median" if summary["method"] == "nuts" else "MAP"
    lines.append(f"predicted transition steps N*(D) ({what}; * beyond the last trained step): " + ", ".join(shown))
    if len(result.strategies) > 2:
        lines += strategies_report(result)
    return "\n".join(lines)


def family_metrics_report(summary: dict) -> list[str]:
    """Report lines with the family's metrics of the predicted mixture against the network
    (the spec's `paper_metrics`; those of the summary for other families) per subset and split.

    >>> leaf = {"r2": 0.5, "mse": 0.25, "correlation": 0.9}
    >>> summary = {"task": "regression", "metrics": {p: {"id": leaf, "ood": leaf} for p in ("fit", "heldout", "all")}}
    >>> print("\\n".join(family_metrics_report(summary)[:2]))
    R², MSE of the predicted mixture vs the network:
      fit      ID 0.500 0.2500   OOD 0.500 0.2500
    """
    metrics = summary.get("metrics") or {}
    spec = FAMILIES.get(summary.get("task"))
    names = None if spec is None else spec.paper_metrics
    if names is None:
        leaf = (metrics.get("all") or {}).get("id") or {}
        names = tuple(k for k, v in leaf.items() if k in METRIC_LABELS and isinstance(v, (int, float)))
    if not names:
        return []
    lines = [", ".join(METRIC_LABELS[n] for n in names) + " of the predicted mixture vs the network:"]
    for part in ("fit", "heldout", "all"):
        cells = []
        for split in ("id", "ood"):
            leaf = (metrics.get(part) or {}).get(split) or {}
            values = [leaf.get(n) for n in names]
            cells.append(f"{split.upper()} " + " ".join(
                (f"{v:.4f}" if n == "mse" else f"{v:.3f}") if isinstance(v, (int, float)) and v == v else "n/a"
                for n, v in zip(names, values)))
        lines.append(f"  {part:<8} " + "   ".join(cells))
    return lines


def strategies_report(result, split: str = "id") -> list[str]:
    """Report lines of a fit with more than two strategies: the correlation of predicted vs
    observed summed weights of the family's groups (markov: w_mem, w_bigram) per subset, the
    number of (D, N) cells each strategy dominates, observed and predicted, and N* for every
    pair of strategies that exchange dominance along N at some logged D."""
    strategies = list(result.strategies)
    rows = result.conditions[result.conditions["split"] == split]
    observed = rows[[f"observed_{s}" for s in strategies]].to_numpy(float)
    predicted = rows[[f"predicted_{s}" for s in strategies]].to_numpy(float)
    lines = []
    groups = weight_groups(result.task)
    if groups:
        seen = observe.summed_weights(observed, strategies, groups)
        model = observe.summed_weights(predicted, strategies, groups)
        modeled, in_fit = rows["modeled"].to_numpy(bool), rows["in_fit"].to_numpy(bool)
        subsets = {"fit": modeled & in_fit, "heldout": modeled & ~in_fit, "all": modeled}
        lines.append(f"correlation of predicted vs observed summed weights ({split.upper()}):")
        for part, mask in subsets.items():
            cells = [f"{name} {_correlation(seen[name][mask], model[name][mask])}" for name in groups]
            lines.append(f"  {part:<8} " + "   ".join(cells))
    counts = []
    for s in strategies:
        o = int((observe.dominant_strategy(observed, strategies) == s).sum())
        p = int((observe.dominant_strategy(predicted, strategies) == s).sum())
        counts.append(f"{s} {o}/{p}")
    lines.append(f"cells (D, N) where each strategy dominates, observed/predicted ({split.upper()}, "
                 f"every checkpoint): " + ", ".join(counts))
    exchanges = dominance_exchanges(result)
    shown = "; ".join(f"{a}→{b} at D={d}: {n:,.0f}" for d, a, b, n in exchanges) or "none"
    lines.append(f"predicted N* where the dominant strategy changes: {shown}")
    return lines


def dominance_exchanges(result, steps=None) -> list[tuple[int, str, str, float]]:
    """(D, from, to, N*) for each change of the predicted dominant strategy along N at each
    logged D, N* being where the two strategies' weights are equal (docs/model.md, transition
    step). `steps`: the N grid searched (default 1 … 10⁸, 400 points on a log scale)."""
    strategies = list(result.strategies)
    steps = np.geomspace(1, 1e8, 400) if steps is None else np.asarray(steps, dtype=float)
    loss, complexity = result.loss[strategies], result.complexity[strategies]
    params = tuple(result.params[k] for k in rational.PARAMETERS)
    found = []
    for diversity in loss.index:
        _, w = rational.log_weights(params, loss.loc[diversity].to_numpy()[None, :],
                                    complexity.loc[diversity].to_numpy()[None, :], steps)
        winner = np.argmax(np.asarray(w), axis=-1)
        for k in np.flatnonzero(winner[1:] != winner[:-1]):
            a, b = strategies[winner[k]], strategies[winner[k + 1]]
            crossing = result.transition_steps((a, b))
            found.append((int(diversity), a, b,
                          float(crossing.loc[crossing["diversity"] == diversity, "transition_step"].iloc[0])))
    return found


def _correlation(a, b) -> str:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.std(a[keep]) == 0 or np.std(b[keep]) == 0:
        return "n/a"
    return f"{np.corrcoef(a[keep], b[keep])[0, 1]:.3f}"
