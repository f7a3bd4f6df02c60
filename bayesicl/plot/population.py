"""Figures of a population fit over configurations (`bayesicl.inference.fit_population`).

- `configuration_phase_diagrams`: one observed / predicted phase-diagram pair per
  configuration (D × N, held-out cells hatched), drawn with the single fit's `weight_panel`;
- `configuration_transitions`: N*(D) of every configuration with its 90% interval;
- `covariate_trend`: N* at a few D against a covariate (e.g. MLP width): the trained
  configurations with their intervals and the population model's prediction between and
  beyond them (`PopulationResult.predict` at covariate values nobody trained);
- `forest`: ArviZ forest plot of every configuration's α, β, γ;
- `predicted_configuration` / `plot_predicted_configuration`: the predicted phase diagram and
  N*(D) of an untrained configuration (`bayesicl predict`).

Each function returns a matplotlib figure and never calls `plt.show()`; `save_population`
writes them as PNG (and PDF). The functions read only the result's tables (``configurations``,
``conditions``, ``transitions``), its ``idata`` and, for the trend, its ``predict``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from arviz.labels import BaseLabeller
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ..atomic import atomic_path
from ..errors import BayesiclError, BayesiclWarning
from .figures import DPI, _grid, _log2_ticks, declutter, weight_panel

#: Columns of `PopulationResult.configurations` that are not covariates.
NOT_COVARIATES = {"configuration", "n_runs", "n_conditions", "settings", "runs"}
#: Covariate the N* trend is drawn against by default, when it varies.
PREFERRED_COVARIATE = "mlp_width"


def is_population(fit: Any) -> bool:
    """Whether `fit` is a population fit over configurations (it has a configurations table).

    >>> is_population(object())
    False
    """
    return isinstance(getattr(fit, "configurations", None), pd.DataFrame)


def covariates(result: Any) -> list[str]:
    """The settings that vary between the configurations of `result`, in table order:
    ``result.covariates`` where the result names them, else the numeric columns of
    ``result.configurations`` that are neither parameters nor bookkeeping."""
    named = getattr(result, "covariates", None)
    if named is not None and not callable(named):
        return [str(c) for c in named]
    table = result.configurations
    params = {p for p in ("alpha", "beta", "gamma")}
    out = []
    for column in table.columns:
        stem = column.rsplit("_", 1)[0] if column.endswith(("_low", "_high", "_sd", "_mean")) else column
        if column in NOT_COVARIATES or column in params or stem in params or stem.startswith("sigma"):
            continue
        if pd.api.types.is_numeric_dtype(table[column]) and table[column].nunique() > 1:
            out.append(column)
    return out


def short_name(configuration: str) -> str:
    """A configuration's name shortened for a panel title.

    >>> short_name("context_length=32,mlp_width=128")
    'T=32, MLP=128'
    """
    words = {"context_length": "T", "mlp_width": "MLP", "num_dims": "d", "width": "width",
             "num_layers": "layers", "seed": "seed"}
    parts = []
    for item in str(configuration).split(","):
        key, sep, value = item.partition("=")
        parts.append(f"{words.get(key.strip(), key.strip())}={value.strip()}" if sep else item.strip())
    return ", ".join(parts)


def _names(result: Any) -> list[str]:
    return [str(c) for c in result.configurations["configuration"]]


def _finite_curve(rows: pd.DataFrame) -> pd.DataFrame:
    n = pd.to_numeric(rows["transition_step"], errors="coerce")
    return rows[np.isfinite(n) & (n > 0)].assign(transition_step=n)


def configuration_phase_diagrams(result: Any, split: str = "id", max_columns: int = 3) -> plt.Figure:
    """Observed (upper) and predicted (lower) memorizing weight over D × N for every
    configuration, one column per configuration (`max_columns` per row of pairs), with
    each configuration's predicted N*(D), its cutoff N₀ and its held-out cells hatched.

    Example: ``bayesicl.plot.configuration_phase_diagrams(result).savefig("phases.png")``.
    """
    names = _names(result)
    conditions = result.conditions[result.conditions["split"] == split]
    if not names or conditions.empty:
        raise BayesiclError("configuration_phase_diagrams: the population fit has no conditions to draw")
    columns = min(max_columns, len(names))
    blocks = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(2 * blocks, columns, figsize=(3.5 * columns + 1.2, 2.9 * 2 * blocks),
                             constrained_layout=True, squeeze=False)
    mesh = None
    for k, name in enumerate(names):
        block, column = divmod(k, columns)
        rows = conditions[conditions["configuration"] == name]
        curve = _finite_curve(result.transitions[result.transitions["configuration"] == name])
        modeled = rows[rows["modeled"].astype(bool)] if "modeled" in rows else rows
        cutoff = float(modeled["step"].min()) if len(modeled) else None
        for row, (column_name, label) in enumerate((("observed_weight", "observed"),
                                                    ("predicted_weight", "predicted"))):
            panel = axes[2 * block + row, column]
            if rows.empty:
                panel.set_axis_off()
                continue
            mesh = weight_panel(panel, rows, column_name, curve, cutoff, cutoff_label=False)
            panel.set_title(f"{short_name(name)}: {label}", fontsize=9)
            if column == 0:
                panel.set_ylabel("training step N", fontsize=9)
            if row == 1:
                panel.set_xlabel("task diversity D", fontsize=9)
            panel.tick_params(labelsize=8)
    for k in range(len(names), blocks * columns):          # empty slots of the last row
        block, column = divmod(k, columns)
        axes[2 * block, column].set_axis_off()
        axes[2 * block + 1, column].set_axis_off()
    handles = [plt.Line2D([], [], color="k", marker="o", ms=3, lw=1.5, label="predicted $N^*(D)$"),
               plt.Line2D([], [], color="k", ls="--", lw=1, label="$N_0$ (modeled above)"),
               Patch(facecolor="white", edgecolor=(0, 0, 0, 0.5), hatch="///", label="held out")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes.ravel()), label="memorizing weight (0 = G, 1 = M)", shrink=0.6)
    fig.suptitle(f"phase diagram of each configuration, observed vs predicted ({split.upper()})", fontsize=11)
    return declutter(fig)


def _transition_band(ax: Any, d: np.ndarray, rows: pd.DataFrame, colour: Any, low_end: float,
                     high_end: float) -> None:
    if not {"low", "high"} <= set(rows):
        return
    low = pd.to_numeric(rows["low"], errors="coerce").to_numpy(float)
    high = pd.to_numeric(rows["high"], errors="coerce").to_numpy(float)
    keep = np.isfinite(low) | np.isfinite(high)
    if keep.any():
        ax.fill_between(d[keep], np.clip(np.nan_to_num(low[keep], nan=low_end), low_end, high_end),
                        np.clip(np.nan_to_num(high[keep], nan=high_end, posinf=high_end), low_end, high_end),
                        color=colour, alpha=0.13, lw=0)


def _step_range(result: Any) -> tuple[float, float]:
    steps = pd.to_numeric(result.conditions["step"], errors="coerce").to_numpy(float)
    return max(np.nanmin(steps), 1.0), np.nanmax(steps)


def panel_groups(result: Any, covariate: str | None = None) -> tuple[str | None, list[str], list[dict], list[pd.DataFrame]]:
    """How the covariate figures split the configurations: (the covariate along x or the
    colour, the other covariates, one dict of their values per panel, the configurations
    table's rows of each panel). `covariate`: default `mlp_width` where it varies, else the
    first covariate; None when no setting varies (one panel of every configuration)."""
    varying = covariates(result)
    table = result.configurations
    if not varying:
        return None, [], [{}], [table]
    covariate = covariate or (PREFERRED_COVARIATE if PREFERRED_COVARIATE in varying else varying[0])
    if covariate not in table or covariate not in varying:
        raise BayesiclError(f"{covariate!r} is not a covariate of this fit (covariates: {varying})")
    others = [c for c in varying if c != covariate]
    if not others:
        return covariate, [], [{}], [table]
    fixed = [dict(zip(others, group)) for group in
             sorted(table[others].drop_duplicates().itertuples(index=False, name=None))]
    members = []
    for values in fixed:
        rows = table
        for key, value in values.items():
            rows = rows[rows[key] == value]
        members.append(rows)
    return covariate, others, fixed, members


def _group_title(fixed: dict) -> str:
    return ", ".join(f"{k} = {_plain(v)}" for k, v in fixed.items()) or "all configurations"


def configuration_transitions(result: Any, covariate: str | None = None) -> plt.Figure:
    """N*(D) of every configuration on log–log axes with its 90% interval (band, clipped to
    the plotted range); hollow markers lie beyond the last trained step. One panel per
    combination of the covariates other than `covariate` (default as `panel_groups`), one
    colour per configuration.

    Example: ``bayesicl.plot.configuration_transitions(result).savefig("transitions.png")``.
    """
    covariate, _, fixed, members = panel_groups(result, covariate)
    fig, axes = plt.subplots(1, len(fixed), figsize=(4.6 * len(fixed) + 1.8, 4.6), sharey=True,
                             constrained_layout=True, squeeze=False)
    first, last = _step_range(result)
    low_end, high_end = first / 3, last * 30
    for panel, values, rows_of_panel in zip(axes[0], fixed, members):
        names = [str(c) for c in rows_of_panel["configuration"]]
        colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(names), 1)))
        diversities = set()
        for colour, name in zip(colours, names):
            rows = _finite_curve(result.transitions[result.transitions["configuration"] == name]).sort_values("diversity")
            if rows.empty:
                continue
            d, n = rows["diversity"].to_numpy(float), rows["transition_step"].to_numpy(float)
            diversities.update(d.tolist())
            beyond = rows["extrapolated"].to_numpy(bool) if "extrapolated" in rows else n > last
            label = (f"{covariate} = {_plain(rows_of_panel.loc[rows_of_panel['configuration'] == name, covariate].iloc[0])}"
                     if covariate and values else short_name(name))
            panel.plot(d, np.clip(n, low_end, high_end), "-", color=colour, lw=1.3, label=label)
            panel.plot(d[~beyond], n[~beyond], "o", color=colour, ms=4)
            panel.plot(d[beyond], np.clip(n[beyond], low_end, high_end), "o", mfc="white", color=colour, ms=4)
            _transition_band(panel, d, rows, colour, low_end, high_end)
        panel.axhline(last, color="grey", ls=":", lw=1, label=f"last trained step ({last:,.0f})")
        panel.set_yscale("log")
        panel.set_ylim(low_end, high_end)
        if diversities:
            _log2_ticks(panel, np.array(sorted(diversities)))
        panel.set_xlabel("task diversity D", fontsize=9)
        panel.set_title(_group_title(values), fontsize=10)
        panel.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("transition step $N^*$")
    fig.suptitle("predicted N*(D) of each configuration (bands: 90% intervals; hollow: beyond the last "
                 "trained step)", fontsize=10)
    return declutter(fig)


def trend_diversities(result: Any, count: int = 3) -> list[int]:
    """The `count` diversities whose N* the most configurations place inside training (ties:
    the larger D), in increasing order: where the trend against a covariate is observed
    rather than extrapolated."""
    table = result.transitions.copy()
    n = pd.to_numeric(table["transition_step"], errors="coerce")
    inside = np.isfinite(n) & (n > 0)
    if "extrapolated" in table:
        inside &= ~table["extrapolated"].astype(bool)
    score = table.assign(inside=inside).groupby("diversity")["inside"].mean()
    chosen = score.sort_index(ascending=False).sort_values(ascending=False, kind="stable").index[:count]
    return sorted(int(d) for d in chosen)


def covariate_trend(result: Any, covariate: str | None = None, diversities=None, num_points: int = 9,
                    extend: float = 1.9) -> plt.Figure:
    """N* at a few diversities against one covariate (the paper's MLP-width titration): each
    trained configuration's N* with its 90% interval (markers), and the population model's
    prediction (`result.predict`) at `num_points` covariate values spanning the trained range
    widened by a factor `extend` on each side (lines and bands; beyond the trained range
    dotted; `predict` refuses more than a factor 2). One panel per combination of the other
    covariates.

    `covariate`: default `mlp_width` where it varies, else the first covariate.
    `diversities`: default `trend_diversities(result)`.
    Example: ``bayesicl.plot.covariate_trend(result, "mlp_width").savefig("trend.png")``.
    """
    if not covariates(result):
        raise BayesiclError("covariate_trend: the configurations share every setting; there is no covariate to draw")
    covariate, _, groups, group_members = panel_groups(result, covariate)
    diversities = trend_diversities(result) if diversities is None else [int(d) for d in diversities]
    table = result.configurations
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups) + 1.6, 4.4), sharey=True,
                             constrained_layout=True, squeeze=False)
    first, last = _step_range(result)
    low_end, high_end = first / 3, last * 100
    values = table[covariate].to_numpy(float)
    trained_low, trained_high = values.min(), values.max()
    grid = np.unique(np.concatenate([np.geomspace(trained_low / extend, trained_high * extend, num_points), values]))
    colours = plt.cm.plasma(np.linspace(0.05, 0.8, max(len(diversities), 1)))
    for panel, fixed, members in zip(axes[0], groups, group_members):
        curves = []
        for x in grid:
            config = {**{k: _plain(v) for k, v in fixed.items()}, covariate: _plain(x, like=values)}
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    # Outside the trained range predict warns; the figure dots those stretches instead.
                    warnings.simplefilter("ignore", BayesiclWarning)
                    prediction = result.predict(diversity=diversities, step=last, config=config)
            except BayesiclError:       # beyond what predict accepts (too far outside the range)
                continue
            curves.append(prediction.transitions.assign(covariate=x))
        if not curves:
            raise BayesiclError(f"covariate_trend: the population predicts no {covariate} value of the grid")
        curve = pd.concat(curves, ignore_index=True)
        for colour, diversity in zip(colours, diversities):
            line = curve[curve["diversity"] == diversity].sort_values("covariate")
            x = line["covariate"].to_numpy(float)
            n = pd.to_numeric(line["transition_step"], errors="coerce").to_numpy(float)
            inside = (x >= trained_low) & (x <= trained_high)
            clipped = np.clip(np.nan_to_num(n, nan=np.nan, posinf=high_end), low_end, high_end)
            panel.plot(np.where(inside, x, np.nan), np.where(inside, clipped, np.nan), "-", color=colour, lw=1.4)
            panel.plot(x, clipped, ":", color=colour, lw=1.1)
            _transition_band(panel, x, line, colour, low_end, high_end)
            observed = result.transitions[(result.transitions["diversity"] == diversity)
                                          & result.transitions["configuration"].isin(members["configuration"])]
            observed = observed.merge(members[["configuration", covariate]], on="configuration")
            on = pd.to_numeric(observed["transition_step"], errors="coerce").to_numpy(float)
            ox = observed[covariate].to_numpy(float)
            lo = pd.to_numeric(observed.get("low"), errors="coerce").to_numpy(float)
            hi = pd.to_numeric(observed.get("high"), errors="coerce").to_numpy(float)
            centre = np.clip(np.nan_to_num(on, posinf=high_end), low_end, high_end)
            err = np.array([centre - np.clip(np.nan_to_num(lo, nan=low_end), low_end, high_end),
                            np.clip(np.nan_to_num(hi, nan=high_end, posinf=high_end), low_end, high_end) - centre])
            panel.errorbar(ox, centre, yerr=np.maximum(err, 0), fmt="o", color=colour, ms=5, capsize=3, lw=1,
                           mec="k", mew=0.6, label=f"D={diversity}")
        panel.axhline(last, color="grey", ls=":", lw=1)
        panel.set_xscale("log", base=2)
        panel.set_yscale("log")
        panel.set_ylim(low_end, high_end)
        ticks = np.unique(values)
        panel.set_xticks(ticks)
        panel.set_xticklabels([f"{v:g}" for v in ticks])
        panel.minorticks_off()
        panel.set_xlabel(f"{covariate}")
        panel.set_title(_group_title(fixed), fontsize=10)
    axes[0, 0].set_ylabel("transition step $N^*$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", lw=1.4, label="population model (90% band)"),
                plt.Line2D([], [], color="k", ls=":", lw=1.1, label="beyond the trained range"),
                plt.Line2D([], [], color="grey", ls=":", lw=1, label=f"last trained step ({last:,.0f})")]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(f"N* against {covariate}: trained configurations (markers, 90% intervals) "
                 "and the population's prediction", fontsize=10)
    return declutter(fig)


def _plain(value: Any, like=None) -> Any:
    """A covariate value as the settings hold it: an int where the trained values are ints.

    >>> _plain(np.float64(128.0), like=np.array([32.0, 512.0]))
    128
    """
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer() and (like is None or np.all(np.mod(like, 1) == 0)):
        return int(value)
    return value


def forest(result: Any, hdi_prob: float = 0.9) -> plt.Figure:
    """ArviZ forest plot of every configuration's α, β, γ (one panel each; the posterior
    median with ArviZ's highest-density interval at `hdi_prob`, thick line: quartiles)."""
    idata = getattr(result, "idata", None)
    if idata is None or not hasattr(idata, "posterior"):
        raise BayesiclError("forest: the population fit has no posterior draws (fit with method='nuts')")
    names = [v for v in ("alpha", "beta", "gamma") if v in idata.posterior]
    if not names:
        raise BayesiclError("forest: the posterior holds none of alpha, beta, gamma")
    count = idata.posterior[names[0]].sizes.get("configuration", 1)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names) + 2.4, 1.2 + 0.42 * count),
                             sharey=True, constrained_layout=True, squeeze=False)
    for k, (panel, name) in enumerate(zip(axes[0], names)):
        az.plot_forest(idata, var_names=[name], combined=True, hdi_prob=hdi_prob, ax=panel,
                       colors="k", textsize=8, labeller=_Labeller())
        panel.set_title(name, fontsize=10)
        if name == "gamma":
            panel.set_xscale("log")
            plain = FuncFormatter(lambda value, _: f"{value:g}")
            panel.xaxis.set_major_formatter(plain)
            panel.xaxis.set_minor_formatter(plain)
        if k:
            panel.tick_params(labelleft=False)
    fig.suptitle(f"per-configuration parameters ({hdi_prob:.0%} HDI)", fontsize=10)
    return declutter(fig)


def _Labeller():
    """ArviZ labeller that names a row by the configuration only (the panel names the parameter)."""
    class Labeller(BaseLabeller):
        def make_label_flat(self, var_name, sel, isel):
            value = sel.get("configuration") if isinstance(sel, dict) else None
            return short_name(value) if value is not None else var_name

    return Labeller()


def predicted_configuration(prediction: Any, split: str | None = None) -> plt.Figure:
    """The predicted phase diagram (w_M over D × N, with N*(D)) and N*(D) with its 90%
    interval for a configuration nobody trained (`PopulationResult.predict`)."""
    rows = prediction.conditions
    if split is not None and "split" in rows:
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise BayesiclError("predicted_configuration: the prediction has no (diversity, step) to draw")
    config = getattr(prediction, "covariates", None) or getattr(prediction, "config", None) or {}
    name = ", ".join(f"{k} = {_plain(v)}" for k, v in config.items()) or "new configuration"
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), constrained_layout=True)
    transitions = prediction.transitions.sort_values("diversity")
    curve = _finite_curve(transitions)
    diversities, steps, _ = _grid(rows, "predicted_weight")
    if len(steps) >= 2 and len(diversities) >= 1:
        mesh = weight_panel(axes[0], rows, "predicted_weight", curve, log_steps=steps.max() >= 20 * steps.min() > 0)
        fig.colorbar(mesh, ax=axes[0], label="predicted memorizing weight $w_M$", shrink=0.9)
    else:                                                   # one step: w_M against D with its interval
        axes[0].plot(rows["diversity"], rows["predicted_weight"], "k-o", ms=4)
        if {"weight_low", "weight_high"} <= set(rows):
            axes[0].fill_between(rows["diversity"], rows["weight_low"], rows["weight_high"], color="k", alpha=0.15)
        _log2_ticks(axes[0], diversities)
        axes[0].set_ylim(-0.03, 1.03)
    axes[0].set_xlabel("task diversity D")
    axes[0].set_ylabel("training step N" if len(steps) >= 2 else "predicted $w_M$")
    axes[0].set_title(f"predicted $w_M$: {name}", fontsize=10)
    ax = axes[1]
    step_values = rows["step"].to_numpy(float)
    first, last = max(step_values.min(), 1.0), step_values.max()
    low_end, high_end = first / 3, last * 100
    if len(curve):
        d, n = curve["diversity"].to_numpy(float), curve["transition_step"].to_numpy(float)
        ax.plot(d, np.clip(n, low_end, high_end), "k-o", ms=4, lw=1.2, label="predicted $N^*(D)$ (median)")
        _transition_band(ax, d, curve, "k", low_end, high_end)
        ax.fill_between([], [], [], color="k", alpha=0.13, lw=0, label="90% interval")
        _log2_ticks(ax, d)
    else:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylim(low_end, high_end)
    ax.set_xlabel("task diversity D")
    ax.set_ylabel("transition step $N^*$")
    ax.set_title("predicted transition step", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    source = getattr(prediction, "source", None)
    if source:
        fig.suptitle(f"a configuration nobody trained: θ from the {source}", fontsize=10)
    return declutter(fig)


#: The figures of a population fit: name → drawing function of the result.
POPULATION_FIGURES = {
    "configuration_phase_diagrams": configuration_phase_diagrams,
    "configuration_transitions": configuration_transitions,
    "covariate_trend": covariate_trend,
    "forest": forest,
}


def population_figures_for(result: Any) -> dict[str, Any]:
    """The figures `result` has: all of `POPULATION_FIGURES`, less the forest plot without
    posterior draws and the covariate trend without a varying covariate."""
    figures = dict(POPULATION_FIGURES)
    if getattr(result, "idata", None) is None or not hasattr(result.idata, "posterior"):
        figures.pop("forest")
    if not covariates(result):
        figures.pop("covariate_trend")
    return figures


def _save(fig: plt.Figure, folder: Path, name: str, pdf: bool) -> list[str]:
    written = []
    for suffix in (("png", "pdf") if pdf else ("png",)):
        path = folder / f"{name}.{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=suffix)
        written.append(str(path))
    plt.close(fig)
    return written


def save_population(result: Any, out: str, pdf: bool = False) -> list[str]:
    """Write the figures of a population fit (`population_figures_for`) as PNG (and PDF)
    into `out`; returns the paths written. A figure of an earlier fit in `out` that this
    fit does not have is removed."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    figures = population_figures_for(result)
    for name in set(POPULATION_FIGURES) - set(figures):
        for suffix in ("png", "pdf"):
            (folder / f"{name}.{suffix}").unlink(missing_ok=True)
    written = []
    for name, draw in figures.items():
        written += _save(draw(result), folder, name, pdf)
    return written


#: The file `plot_predicted_configuration` writes.
PREDICTED_FIGURE = "predicted_configuration"


def plot_predicted_configuration(prediction: Any, out: str, pdf: bool = False) -> list[str]:
    """Write `predicted_configuration.png` (the predicted phase diagram and N*(D) of an
    untrained configuration, `predicted_configuration`) into the folder `out`; returns the
    paths written. `bayesicl predict` calls it."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return _save(predicted_configuration(prediction), folder, PREDICTED_FIGURE, pdf)
