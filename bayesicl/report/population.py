"""The report page of a population fit over configurations (`bayesicl.inference.fit_population`):
the verdict, the population parameters (μ, B, τ), every configuration's (α, β, γ) and how well
it predicts its runs, N*(D) per configuration, the figures, the settings.

Every value comes from the fit's summary.json (``result.report``) and its tables as written;
`bayesicl.report.render_report` hands a population fit to `render_population_report`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .._version import __version__
from .numbers import number, percent
from .page import FILE_NAME, draw_figures
from .sections import esc, provenance_section, table, verdict_section
from .verdict import verdict

#: What each population figure shows, under it on the page.
CAPTIONS = {
    "configuration_phase_diagrams": "Each configuration's observed (upper) and predicted (lower) memorizing "
                                    "weight over task diversity D and training step N (ID): red = memorizing, "
                                    "blue = generalizing. Black line: that configuration's predicted N*(D); "
                                    "dashed: its cutoff N<sub>0</sub>; hatched: held-out conditions.",
    "configuration_transitions": "Predicted N*(D) of every configuration with its 90% interval (bands); "
                                 "hollow markers lie beyond the last trained step.",
    "covariate_trend": "N* at a few diversities against a covariate: each trained configuration with its 90% "
                       "interval (markers) and the population model's prediction at covariate values nobody "
                       "trained (lines and 90% bands; dotted beyond the trained range).",
    "forest": "Every configuration's α, β, γ: posterior median, quartiles (thick) and 90% highest-density "
              "interval (ArviZ forest plot).",
}
#: The population parameters, in the coordinates of the model (docs/model.md#population-model).
THETA_MEANING = {
    "logit_alpha": "logit α", "log_beta": "log β", "log_gamma_ref": "log γ̃ (γ at the reference step)",
}


def is_population_summary(summary: Mapping[str, Any]) -> bool:
    """Whether a summary.json content is a population fit's.

    >>> is_population_summary({"kind": "population"}), is_population_summary({"task": "urns"})
    (True, False)
    """
    return summary.get("kind") == "population"


def _interval(cell: Mapping[str, Any] | None) -> str:
    """"mean [low, high]".

    >>> _interval({"mean": 0.5, "low": 0.25, "high": 1.0})
    '0.5 [0.25, 1]'
    """
    if not cell or cell.get("mean") is None:
        return "n/a"
    return f"{number(cell['mean'])} [{number(cell.get('low'))}, {number(cell.get('high'))}]"


def population_verdict(summary: Mapping[str, Any]):
    """The page's verdict of a population fit: the sampler's diagnostics and every guard (a
    configuration's guards are prefixed by its name); "not identified" when a configuration
    says so (its ``identified`` is false, or its identification guard fired)."""
    guards = [str(g) for g in summary.get("guards") or []]
    flags = summary.get("identified")
    if isinstance(flags, Mapping):
        identified = all(bool(v) for v in flags.values())
    elif isinstance(flags, bool):
        identified = flags
    else:
        identified = not any("not identified" in g for g in guards)
    view = {**summary, "identified": identified,
            "coverage": (summary.get("coverage") or {}).get("overall")}
    return verdict(view, {"sampler": summary.get("sampler") or {}})


def population_section(summary: Mapping[str, Any]) -> str:
    """μ, B (per covariate) and τ with their 90% intervals, in θ = (logit α, log β, log γ̃)."""
    population = summary.get("population")
    pool = summary.get("pool")
    if not population:
        what = {"full": "one (α, β, γ) shared by every configuration", "none": "an independent fit per configuration"}
        return (f'<section id="population"><h2>Population</h2><p>Pooling <b>{esc(pool)}</b>: '
                f'{esc(what.get(pool, "no population model"))}; no population parameters.</p></section>')
    parameters = population.get("parameters") or list(THETA_MEANING)
    names = (population.get("covariates") or {}).get("names") or []
    headers = ["θ", "μ (at the mean covariates)", *[f"B: {esc(n)}" for n in names], "τ (spread between configurations)"]
    rows = []
    for p in parameters:
        rows.append([esc(THETA_MEANING.get(p, p)), _interval((population.get("mu") or {}).get(p)),
                     *[_interval(((population.get("B") or {}).get(p) or {}).get(n)) for n in names],
                     _interval((population.get("tau") or {}).get(p))])
    covariates = population.get("covariates") or {}
    ranges = ", ".join(f"{esc(n)} {number(lo)} … {number(hi)}"
                       for n, lo, hi in zip(names, covariates.get("low") or [], covariates.get("high") or []))
    note = ("<p class=note>θ<sub>j</sub> = μ + B·x<sub>j</sub> + diag(τ)·L·z<sub>j</sub> per configuration j, x "
            f"the {esc(covariates.get('transform', 'standardized log'))} of each covariate (B: the change of θ per "
            "standard deviation of its log). Intervals: 90%, central. Trained range: "
            f"{ranges or 'n/a'}; `predict` refuses a covariate far outside it.</p>")
    return (f'<section id="population"><h2>Population parameters (pooling: {esc(pool)})</h2>'
            f'{table(headers, rows, cls="metrics")}{note}</section>')


def configurations_section(result: Any, summary: Mapping[str, Any]) -> str:
    """One row per configuration: its covariates, runs, α, β, γ with intervals, and the
    correlation and coverage of its held-out conditions (ID)."""
    frame = result.configurations
    names = ((summary.get("covariates") or {}).get("names")
             or [c for c in frame.columns if c not in {"configuration", "n_runs"}
                 and c.split("_")[0] not in {"alpha", "beta", "gamma"}])
    metrics, coverage = summary.get("metrics") or {}, summary.get("coverage") or {}
    rows = []
    for record in frame.to_dict(orient="records"):
        name = record["configuration"]
        cells = [f"<b>{esc(name)}</b>", *[number(record.get(n)) for n in names], number(record.get("n_runs"))]
        for p in ("alpha", "beta", "gamma"):
            cells.append(_interval({"mean": record.get(p), "low": record.get(f"{p}_low"),
                                    "high": record.get(f"{p}_high")}))
        for subset in ("fit", "heldout"):
            cell = (((metrics.get(name) or {}).get(subset) or {}).get("id") or {})
            cells.append(number(cell.get("correlation"), 3))
        cells.append(percent(((coverage.get(name) or {}).get("heldout") or {}).get("id")))
        rows.append(cells)
    headers = ["configuration", *map(esc, names), "runs", "α", "β", "γ", "correlation ID (fit)",
               "correlation ID (held-out)", "coverage ID (held-out)"]
    note = ("<p class=note>α, β, γ: posterior mean [90% central interval]. Correlation: Pearson r of the "
            "expected vs observed memorizing weight over that configuration's conditions; coverage: the share "
            "of held-out observed weights inside their 90% predictive interval.</p>")
    return (f'<section id="configurations"><h2>Configurations</h2>'
            f'{table(headers, rows, cls="metrics")}{note}</section>')


def transitions_section(result: Any) -> str:
    """N*(D) per configuration (rows) and diversity (columns): median [90% interval]; * beyond
    the last trained step."""
    steps = result.transitions
    if steps is None or steps.empty:
        return ""
    diversities = sorted(int(d) for d in steps["diversity"].unique())
    rows = []
    for name in result.configurations["configuration"]:
        mine = steps[steps["configuration"] == name].set_index("diversity")
        cells = [f"<b>{esc(name)}</b>"]
        for d in diversities:
            if d not in mine.index:
                cells.append("")
                continue
            row = mine.loc[d]
            star = "*" if bool(row.get("extrapolated", False)) else ""
            cells.append(f"{number(row['transition_step'])}{star}<br><span class=base>"
                         f"[{number(row.get('low'))}, {number(row.get('high'))}]</span>")
        rows.append(cells)
    headers = ["configuration", *[f"D = {d}" for d in diversities]]
    return (f'<section id="transition"><h2>Predicted transition step N*(D) per configuration</h2>'
            f'{table(headers, rows, cls="metrics")}<p class=note>Median over posterior draws [90% interval]; '
            "* beyond the last trained step (a prediction, not an observation).</p></section>")


def _figures(figures: Mapping[str, bytes]) -> str:
    if not figures:
        return ""
    parts = ['<section id="figures"><h2>Figures</h2>']
    for name, data in figures.items():
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f'<figure id="figure-{esc(name)}"><img src="data:image/png;base64,{encoded}" '
                     f'alt="{esc(name.replace("_", " "))}"><figcaption><b>{esc(name)}.png</b> — '
                     f'{CAPTIONS.get(name, esc(name.replace("_", " ")))}</figcaption></figure>')
    parts.append("</section>")
    return "".join(parts)


def _overall(summary: Mapping[str, Any]) -> str:
    rows = []
    coverage = (summary.get("coverage") or {}).get("overall") or {}
    elpd = (summary.get("elpd") or {}).get("overall") or {}
    for split in ("id", "ood"):
        cell = elpd.get(split) or {}
        rows.append([split.upper(), percent((coverage.get("fit") or {}).get(split)),
                     percent((coverage.get("heldout") or {}).get(split)),
                     f"{number(cell.get('elpd'))} ± {number(cell.get('se'))}" if cell else "n/a"])
    return ("<h3>All configurations together</h3>"
            + table(["split", "coverage (fit)", "coverage (held-out)", "held-out elpd ± se"], rows, cls="compact"))


def settings_section(summary: Mapping[str, Any]) -> str:
    sampler = summary.get("sampler") or {}
    rows = [["task", esc(summary.get("task"))], ["strategies", esc(" vs ".join(summary.get("strategies") or []))],
            ["pooling", esc(summary.get("pool"))], ["method", esc(summary.get("method"))],
            ["run effects", esc(summary.get("effects"))], ["held-out fraction", number(summary.get("holdout"))],
            ["reference step N<sub>ref</sub>", number(summary.get("reference_step"))],
            ["seed", number(summary.get("seed"))]]
    if sampler:
        rows.append(["sampler", esc(", ".join(f"{k} = {v}" for k, v in sampler.items()))])
    if summary.get("runtime_s") is not None:
        rows.append(["fit time", f"{summary['runtime_s']:.1f} s"])
    return f'<section id="settings"><h2>Settings</h2>{table(None, rows, cls="kv")}</section>'


def render_population_report(result: Any, figures: Mapping[str, bytes] | None = None, style: str = "") -> str:
    """The report page of a population fit as one self-contained HTML string (figures
    embedded; drawn here when `figures` is None)."""

    summary = result.summary()
    if figures is None:
        figures = draw_figures(result)
    title = f"bayesicl population fit: {summary.get('task')}, {len(result.configurations)} configurations"
    files = ["summary.json", "configurations.csv", "conditions.csv", "transitions.csv"]
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">The rational strategy model (α, β, γ) per configuration, pooled across '
        f'configurations ({esc(summary.get("pool"))}): {esc(", ".join(result.configurations["configuration"]))}.</p>',
        verdict_section(population_verdict(summary)),
        population_section(summary),
        configurations_section(result, summary) + _overall(summary),
        transitions_section(result),
        _figures(figures),
        settings_section(summary),
        provenance_section(summary, files + [f"{n}.png" for n in figures] + [FILE_NAME], __version__),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")
