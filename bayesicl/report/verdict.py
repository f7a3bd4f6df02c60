"""The verdict of a fit in plain words: can its numbers be trusted, and if not, why not.

The verdict leads the report page. It is read from summary.json (and fit.json's ``info`` for
the optimizer of a MAP fit), never recomputed, so the page says what the fit folder says.
Three levels:

- ``not identified``: the data do not pin down (α, β, γ) (summary key ``identified`` false);
  the correlations of such a fit are not results;
- ``caution``: identified (or not assessed), but a guard fired — each guard is listed;
- ``trusted``: identified, diagnostics pass, no guard fired.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .numbers import number, percent

LEVELS = ("trusted", "caution", "not identified")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``level`` (one of `LEVELS`), a one-sentence ``headline``, the sampler or optimizer
    ``diagnostics`` in plain sentences, the fit's ``guards`` and, where summary.json has
    it, the predictive ``coverage`` in one sentence."""

    level: str
    headline: str
    diagnostics: list[str]
    guards: list[str]
    coverage: str | None


def verdict(summary: dict[str, Any], info: dict[str, Any] | None = None) -> Verdict:
    """The verdict of a fit from its summary.json content (and fit.json ``info``).

    >>> v = verdict({"identified": False, "guards": ["fewer than 3 modeled steps"], "method": "map",
    ...              "diagnostics": {}})
    >>> v.level, v.guards
    ('not identified', ['fewer than 3 modeled steps'])
    >>> verdict({"identified": True, "guards": [], "method": "map", "diagnostics": {}}).level
    'trusted'
    """
    guards = [str(g) for g in summary.get("guards") or []]
    identified = summary.get("identified")
    if identified is False:
        level = "not identified"
        headline = ("Not identified: these data do not pin down (α, β, γ). The correlations and "
                    "predictions below describe one of many equally good fits; do not report them as results.")
    elif guards:
        level = "caution"
        assessed = "Identified" if identified else "Identification not assessed by this fit"
        headline = (f"{assessed}, with {len(guards)} warning{'s' if len(guards) != 1 else ''}: "
                    "read them before using the numbers.")
    elif identified:
        level = "trusted"
        headline = "Identified: the diagnostics pass and no guard fired."
    else:
        level = "caution"
        headline = "Identification not assessed by this fit (written before the check existed); no guard fired."
    return Verdict(level=level, headline=headline, diagnostics=_diagnostics(summary, info or {}),
                   guards=guards, coverage=_coverage(summary))


def _diagnostics(summary: dict[str, Any], info: dict[str, Any]) -> list[str]:
    diag = summary.get("diagnostics") or {}
    if summary.get("method") == "nuts":
        sampler = info.get("sampler") or {}
        chains = diag.get("num_chains", sampler.get("num_chains"))
        draws = diag.get("num_draws", sampler.get("num_samples"))
        lines = [f"NUTS: {number(chains)} chains × {number(draws)} draws"
                 + (f" after {number(sampler['num_warmup'])} warm-up steps" if sampler.get("num_warmup") else "") + "."]
        r_hat = diag.get("r_hat_max")
        if r_hat is not None:
            lines.append(f"Largest r̂ {r_hat:.4f}: " + ("the chains agree (≤ 1.01)." if r_hat <= 1.01
                                                        else "the chains disagree (> 1.01)."))
        ess = diag.get("ess_bulk_min")
        if ess is not None:
            lines.append(f"Smallest bulk effective sample size {ess:.0f}: "
                         + ("enough for 90% intervals (≥ 400)." if ess >= 400 else "too few for stable intervals (< 400)."))
        divergences = diag.get("divergences")
        if divergences is not None:
            lines.append("No divergent transitions." if divergences == 0
                         else f"{divergences} divergent transitions: the posterior may be biased.")
        return lines
    lines = ["MAP: one point estimate of the paper's objective; it has no uncertainty "
             "(fit with --method nuts for intervals)."]
    objective = summary.get("objective") or {}
    if objective.get("map_exact") is not None:
        lines.append(f"Objective ({objective.get('kind', 'objective')}) at the optimum: {number(objective['map_exact'])}.")
    optimizer = info.get("map") or {}
    if optimizer:
        lines.append("The Newton polish converged." if optimizer.get("converged")
                     else "The Newton polish did not converge.")
        if optimizer.get("at_bound"):
            lines.append(f"On the edge of the search box: {', '.join(optimizer['at_bound'])}.")
        if optimizer.get("starts"):
            lines.append(f"{len(optimizer['starts'])} starting points searched.")
    return lines


def _coverage(summary: dict[str, Any]) -> str | None:
    coverage = summary.get("coverage")
    if not coverage:
        return None
    level = summary.get("interval_level", 0.9)
    parts = []
    for subset, label in (("fit", "fit"), ("heldout", "held-out")):
        cells = coverage.get(subset) or {}
        shown = ", ".join(f"{split.upper()} {percent(cells.get(split))}" for split in ("id", "ood"))
        parts.append(f"{label} conditions: {shown}")
    return (f"Share of observed weights inside the {percent(level)} predictive interval (nominal "
            f"{percent(level)}) — " + "; ".join(parts) + ".")
