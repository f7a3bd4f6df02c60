"""The sections of the report page, each a function of the fit's summary that returns HTML.

Every value comes from summary.json (or fit.json's ``info``) as written; the sections only
choose words and layout. Keys a fit folder does not have (an older fit) are left out, never
guessed.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from .numbers import number, percent
from .verdict import Verdict

#: What each parameter means, in the notation of docs/model.md.
PARAMETER_MEANING = {
    "alpha": "evidence grows as N<sup>1−α</sup>: sub-linear accumulation of the loss",
    "beta": "complexity enters the prior as K<sup>β</sup> (bits)",
    "gamma": "scale of the loss term against the complexity term",
    "sigma_obs": "observation noise of the relative distance",
    "sigma_logit": "observation noise on the log-odds scale",
    "sigma_run": "spread of the runs' log-odds effects",
    "trend_corr": "correlation of a run's deviation between successive checkpoints",
}
SUBSET_LABELS = {"fit": "fit", "heldout": "held-out", "all": "all modeled"}
#: Columns of the N*(D) records, in the order shown, with their headings.
TRANSITION_COLUMNS = {
    "diversity": "D", "transition_step": "N*", "transition_at_mean": "N* at the posterior mean",
    "transition_low": "low", "transition_high": "high", "direction": "direction",
    "last_trained_step": "last trained step", "extrapolated": "extrapolated",
}


def esc(value: Any) -> str:
    """HTML-escaped text of a value.

    >>> esc("a < b & c")
    'a &lt; b &amp; c'
    """
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]], cls: str = "",
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table (no header row for `headers` None); headers and cells are HTML already
    (escape text with `esc`).

    >>> table(["a"], [["1"]])
    '<table class=""><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>'
    """
    head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = []
    for k, row in enumerate(rows):
        extra = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        body.append(f"<tr{extra}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f'<table class="{cls}">{head}<tbody>{"".join(body)}</tbody></table>'


def verdict_section(v: Verdict) -> str:
    items = "".join(f"<li>{esc(line)}</li>" for line in v.diagnostics)
    guards = "".join(f"<li>{esc(line)}</li>" for line in v.guards) or "<li>none fired</li>"
    coverage = f"<p>{esc(v.coverage)}</p>" if v.coverage else ""
    return (f'<section id="verdict" class="verdict {v.level.replace(" ", "-")}">'
            f'<h2>Verdict: {esc(v.level)}</h2><p class="headline">{esc(v.headline)}</p>'
            f"<h3>Diagnostics</h3><ul>{items}</ul>{coverage}"
            f"<h3>Guards (warnings about this fit)</h3><ul>{guards}</ul></section>")


def convention_note(summary: dict[str, Any]) -> str:
    """One line naming the K convention the parameters were fitted under."""
    convention = summary.get("complexity_convention", "bayesicl")
    what = ("the paper's (its compressors with delta + brotli, int64 pseudo-counts, its K_code)"
            if convention == "paper" else "bayesicl's (docs/model.md#complexity)")
    return (f"<p class=note>K convention: <b>{esc(convention)}</b>, {what}. α, β, γ are comparable only "
            "between fits under the same K convention.</p>")


def parameters_section(summary: dict[str, Any]) -> str:
    level = percent(summary.get("interval_level", 0.9))
    params = summary.get("params") or {}
    map_params = (summary.get("objective") or {}).get("map_params") or {}
    if summary.get("method") != "nuts":
        rows = [[f"<b>{esc(name)}</b>", PARAMETER_MEANING.get(name, ""), number(p.get("mean"))]
                for name, p in params.items()]
        body = table(["parameter", "meaning", "MAP (the paper's objective)"], rows)
        note = "<p class=note>A MAP fit is one point: no standard deviation, no interval.</p>" + convention_note(summary)
        return f'<section id="parameters"><h2>Parameters</h2>{body}{note}</section>'
    rows = []
    for name, p in params.items():
        interval = "n/a" if p.get("low") is None else f"[{number(p['low'])}, {number(p['high'])}]"
        ratio = p.get("sd_ratio")
        rows.append([f"<b>{esc(name)}</b>", PARAMETER_MEANING.get(name, ""), number(p.get("mean")),
                     number(p.get("sd")), interval, number(p.get("map", map_params.get(name))),
                     "" if ratio is None else number(ratio, 2)])
    body = table(["parameter", "meaning", "posterior mean", "sd", f"{level} interval", "MAP (the paper's objective)",
                  "sd / prior sd"], rows)
    kind = summary.get("interval_kind", "credible intervals")
    note = (f"<p class=note>Intervals: {level}, {esc(kind)}. The MAP column optimizes the paper's objective on "
            "the same conditions, for comparison with the paper. sd / prior sd near 1: the data taught the "
            "parameter little (above 0.8 the fit is not identified).</p>") + convention_note(summary)
    return f'<section id="parameters"><h2>Parameters</h2>{body}{note}{effects_table(summary)}</section>'


def effects_table(summary: dict[str, Any]) -> str:
    """σ_run and the per-run effects (ID and the OOD stage), where the fit has run effects."""
    effects = summary.get("effects")
    if not effects or not isinstance(effects, dict):
        return ""
    parts = [f"<h3>Run effects ({esc(effects.get('kind', ''))}): what the rational model does not explain</h3>",
             f"<p>Each run's offset on the {esc(effects.get('scale', 'log-odds scale'))}; a pattern over D "
             "is structure the model misses.</p>"]
    spread = [f"{esc(name)} {_interval(effects[name])}" for name in ("sigma_run", "trend_corr")
              if isinstance(effects.get(name), dict)]
    if spread:
        parts.append("<p>" + "; ".join(spread) + "</p>")
    ood = effects.get("ood") if isinstance(effects.get("ood"), dict) else {}
    ood_runs = {(r.get("diversity"), r.get("seed")): r for r in ood.get("runs") or []}
    runs = effects.get("runs") or []
    if runs:
        rows = [[number(r.get("diversity")), number(r.get("seed")), _interval(r)]
                + ([_interval(ood_runs.get((r.get("diversity"), r.get("seed")), {}))] if ood_runs else [])
                for r in runs]
        parts.append(table(["D", "seed", "ID effect"] + (["OOD effect"] if ood_runs else []), rows, cls="compact"))
    stage = [f"{esc(name)} {_interval(value)}" for name, value in ood.items() if isinstance(value, dict)]
    if stage:
        parts.append("<p class=note>OOD stage (fitted on the fit conditions' OOD residuals after α, β, γ; "
                     "it never informs them): " + "; ".join(stage) + "</p>")
    return "".join(parts)


def _interval(cell: dict[str, Any]) -> str:
    """"mean [low, high]" of a summary cell.

    >>> _interval({"mean": 0.5, "low": 0.25, "high": 1.0})
    '0.5 [0.25, 1]'
    """
    if not cell or cell.get("mean") is None:
        return "n/a"
    if cell.get("low") is None:
        return number(cell["mean"])
    return f"{number(cell['mean'])} [{number(cell['low'])}, {number(cell['high'])}]"


def metrics_section(summary: dict[str, Any], v: Verdict) -> str:
    metrics = summary.get("metrics") or {}
    baselines = summary.get("baselines") or {}
    coverage = summary.get("coverage") or {}
    names = _metric_names(metrics)
    headers = ["conditions", "split", "n", "correlation", *names]
    if coverage:
        headers.append(f"coverage ({percent(summary.get('interval_level', 0.9))} predictive interval)")
    rows = []
    for subset in ("fit", "heldout", "all"):
        for split in ("id", "ood"):
            cell = (metrics.get(subset) or {}).get(split) or {}
            row = [SUBSET_LABELS[subset], split.upper(), number(cell.get("n_conditions"))]
            for name in ("correlation", *names):
                value = number(cell.get(name))
                if cell.get(name) is None and cell.get(f"{name}_reason"):
                    value = f'<span title="{esc(cell[name + "_reason"])}">n/a*</span>'
                base = [f"{kind} {number(((baselines.get(kind) or {}).get(subset) or {}).get(split, {}).get(name))}"
                        for kind in ("constant", "random") if kind in baselines]
                row.append(f"<b>{value}</b>" + (f'<br><span class="base">{"<br>".join(base)}</span>' if base else ""))
            if coverage:
                row.append(percent((coverage.get(subset) or {}).get(split)) if subset in coverage else "")
            rows.append(row)
    warning = ""
    if v.level == "not identified":
        warning = ('<p class="warning">This fit is not identified: the numbers below are not results.</p>')
    note = ("<p class=note>Bold: the fitted model. Small: the baselines on the same conditions — "
            "<i>constant</i> (the constant strategy C) and <i>random</i> (random convex weights). "
            "correlation: Pearson r of the predicted and observed memorizing weight over conditions; "
            "the other metrics compare the model's mixture with the transformer's outputs token by token "
            "and are averaged over conditions (docs/outputs.md). n/a*: undefined, hover for the reason.</p>")
    return (f'<section id="metrics"><h2>How well the model predicts the transformer</h2>{warning}'
            f'{table(headers, rows, cls="metrics")}{note}{_elpd(summary)}</section>')


def _metric_names(metrics: dict[str, Any]) -> list[str]:
    for subset in metrics.values():
        for cell in (subset or {}).values():
            if cell:
                return [k for k, v in cell.items()
                        if k not in ("n_conditions", "correlation", "observed_weight") and not k.endswith("_reason")
                        and (v is None or isinstance(v, (int, float)))]
    return []


def _elpd(summary: dict[str, Any]) -> str:
    elpd = summary.get("elpd")
    if not elpd or not isinstance(elpd, dict):
        return ""
    rows = [[split.upper(), number(cell.get("elpd")), number(cell.get("se")), number(cell.get("n_conditions"))]
            for split, cell in elpd.items() if isinstance(cell, dict)]
    about = "; ".join(f"{esc(k)}: {esc(v)}" for k, v in elpd.items() if not isinstance(v, dict))
    return ("<h3>Log predictive density of held-out conditions (elpd)</h3>"
            + table(["split", "elpd", "standard error", "conditions"], rows, cls="compact")
            + (f"<p class=note>{about}. Higher is better; compare fits of the same data only.</p>" if about else ""))


def transition_section(summary: dict[str, Any], last_step: float | None) -> str:
    records = summary.get("transition_steps") or []
    if not records:
        return ""
    columns = [c for c in TRANSITION_COLUMNS if any(c in r for r in records)]
    columns += [c for c in records[0] if c not in columns]
    columns = [c for c in columns if c == "extrapolated" or any(r.get(c) is not None for r in records)]
    if summary.get("method") != "nuts":                 # a point fit: N* at the mean is N* itself
        columns = [c for c in columns if c != "transition_at_mean"]
    primary = "transition_step" if "transition_step" in columns else None
    rows, classes = [], []
    for record in records:
        extrapolated = record.get("extrapolated")
        if extrapolated is None and last_step is not None and primary is not None:
            value = record.get(primary)
            extrapolated = value is not None and _as_float(value) > last_step
        rows.append([number(record.get(c)) if c != "extrapolated" else number(bool(extrapolated))
                     for c in columns if c != "extrapolated"] + [("<b>extrapolated</b>" if extrapolated else "")])
        classes.append("extrapolated" if extrapolated else "")
    headers = [TRANSITION_COLUMNS.get(c, esc(c)) for c in columns if c != "extrapolated"] + ["beyond training"]
    note = ("<p class=note>N*(D): the training step at which memorizing overtakes generalizing "
            "(direction G→M), ∞ where it never does within the model. "
            + (f"The last logged step is N = {number(last_step)}; rows marked <i>extrapolated</i> predict "
               "beyond it and were not observed. " if last_step is not None else "")
            + (f"N* is the {esc(summary.get('transition_step_is', 'median over posterior draws'))}; the two "
               "differ because N* is not linear in the parameters.</p>" if summary.get("method") == "nuts"
               else "N* at the MAP parameters.</p>"))
    return (f'<section id="transition"><h2>Predicted transition step N*(D)</h2>'
            f'{table(headers, rows, cls="compact", row_classes=classes)}{note}</section>')


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def settings_section(summary: dict[str, Any], info: dict[str, Any]) -> str:
    split = summary.get("subset") or {}
    rows = [[esc(name), esc(value)] for name, value in _flat_settings(summary.get("settings") or {})]
    rows += [
        ["strategies", esc(" vs ".join(summary.get("strategies") or []))],
        ["method", esc(summary.get("method"))],
        ["variant", esc(summary.get("variant"))],
        ["cutoff N<sub>0</sub>", number(summary.get("cutoff_step"))],
        ["conditions", esc(", ".join(f"{SUBSET_LABELS.get(k, k)} {v}" for k, v in (summary.get("n_conditions") or {}).items()))],
        ["held-out rule", esc(split.get("rule", "")) + (f" (holdout = {number(split['holdout'])})" if "holdout" in split else "")],
        ["seed", number(summary.get("seed"))],
    ]
    sampler = info.get("sampler")
    if sampler:
        rows.append(["priors", esc("; ".join(f"{k} ~ {v}" for k, v in (summary.get("priors") or {}).items()))])
        rows.append(["sampler", esc(", ".join(f"{k} = {v}" for k, v in sampler.items()))])
    if summary.get("runtime_s") is not None:
        rows.append(["fit time", f"{summary['runtime_s']:.1f} s"])
    return f'<section id="settings"><h2>Settings</h2>{table(None, rows, cls="kv")}</section>'


def _flat_settings(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Settings as (name, "key = value, ...") rows, one per nested group.

    >>> _flat_settings({"task": {"num_dims": 8}, "zipf": None})
    [('task', 'num_dims = 8'), ('zipf', 'None')]
    """
    rows = []
    for name, value in settings.items():
        if isinstance(value, dict):
            rows.append((name, ", ".join(f"{k} = {v}" for k, v in value.items())))
        else:
            rows.append((name, str(value)))
    return rows


def provenance_section(summary: dict[str, Any], files: Sequence[str], report_version: str) -> str:
    versions = summary.get("versions") or {}
    rows = [[esc(k), esc(v)] for k, v in versions.items()]
    rows.append(["runs hash", f"<code>{esc(summary.get('runs_hash') or 'n/a (evidence not built from logged runs)')}</code>"])
    rows.append(["report written by", f"bayesicl {esc(report_version)}"])
    listing = "".join(f"<li><code>{esc(name)}</code></li>" for name in files)
    return (f'<section id="provenance"><h2>Versions and provenance</h2>{table(None, rows, cls="kv")}'
            f"<p>Files of this fit folder (every column and key is explained in docs/outputs.md):</p>"
            f"<ul class=files>{listing}</ul></section>")
