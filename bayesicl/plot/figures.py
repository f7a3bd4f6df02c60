"""The five figures of docs/model.md#figures, drawn from a fit (`bayesicl.inference.FitResult`).

Each function takes a fit, draws into a new (or given) matplotlib figure and returns it;
none of them calls `plt.show()`. Diversity D is on a log₂ axis everywhere, steps are labelled,
and the predicted transition step N*(D) is overlaid where it is defined. Tick labels are
thinned until none overlap at the saved size (`declutter`), and legends sit outside the
plotting area, where they hide no data and no label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter  # noqa: E402

from .. import observe  # noqa: E402
from ..atomic import atomic_path  # noqa: E402
from ..errors import BayesiclError  # noqa: E402
from ..strategies import weight_groups  # noqa: E402

WEIGHT_CMAP = "RdBu_r"  # red = memorizing (w_M = 1), blue = generalizing (w_M = 0)
#: Resolution of the saved PNGs (the report embeds the same files).
DPI = 130
#: Gap (pixels at `DPI`) that neighbouring tick labels keep between them.
LABEL_GAP = 2.0


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted cell centres (geometric midpoints on a log axis)."""
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if v.size == 1:
        mid = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        inner = (v[1:] + v[:-1]) / 2
        mid = np.concatenate([[v[0] - (inner[0] - v[0])], inner, [v[-1] + (v[-1] - inner[-1])]])
    return np.exp(mid) if log else mid


def _grid(conditions: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(diversities, steps, values[step, diversity]) from a long table; missing cells are NaN."""
    table = conditions.pivot_table(index="step", columns="diversity", values=column, aggfunc="mean")
    return table.columns.to_numpy(float), table.index.to_numpy(float), table.to_numpy(float)


def _transition_curve(fit: Any) -> pd.DataFrame:
    steps = fit.transition_steps()
    finite = np.isfinite(steps["transition_step"]) & (steps["transition_step"] > 0)
    return steps[finite]


def _modeled(rows: pd.DataFrame) -> np.ndarray:
    if "modeled" in rows:
        return rows["modeled"].to_numpy(bool)
    return np.ones(len(rows), dtype=bool)


def _log2_ticks(ax: plt.Axes, diversities: np.ndarray) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(diversities)
    ax.set_xticklabels([f"{int(d)}" for d in diversities])
    ax.minorticks_off()


def _overlapping(labels: list) -> bool:
    """Whether any two of the drawn tick labels' boxes overlap (or come within LABEL_GAP)."""
    boxes = [t.get_window_extent() for t in labels]
    return any(a.padded(LABEL_GAP / 2).overlaps(b.padded(LABEL_GAP / 2))
               for k, a in enumerate(boxes) for b in boxes[k + 1:])


def visible_tick_labels(axis) -> list:
    """The tick labels of a matplotlib axis that are drawn: non-empty, visible, inside the view."""
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [t.label1 for t in ticks
            if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high]


def declutter(fig: plt.Figure) -> plt.Figure:
    """Thin the tick labels of every axis of `fig` until no two overlap, at the saved size.

    Every second minor label goes first (a log axis spanning a decade or two labels its minor
    ticks), then every second label, and so on. Labels keep their text; only which ticks are
    labelled changes.
    """
    fig.set_dpi(DPI)
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    for _ in range(6):                       # one draw per round: drawing is the slow part
        fig.canvas.draw()
        crowded = [axis for axis in axes if _overlapping(visible_tick_labels(axis))]
        if not crowded:
            break
        for axis in crowded:
            low, high = sorted(axis.get_view_interval())

            def labelled(ticks):
                return [(t.get_loc(), t.label1.get_text()) for t in ticks
                        if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high]

            majors, minors = labelled(axis.get_major_ticks()), labelled(axis.get_minor_ticks())
            # Minor labels (a log axis over less than a decade or two) thin first, keeping every
            # major; then every second label goes.
            kept = sorted(majors + minors[1::2]) if minors else majors[::2]
            axis.set_minor_formatter(NullFormatter())
            axis.set_major_locator(FixedLocator([loc for loc, _ in kept]))
            axis.set_ticklabels([text for _, text in kept])
    return fig


def phase_diagram(fit: Any, split: str = "id", ax: Any = None) -> plt.Figure:
    """Observed w̃_M and predicted w_M over D (x, log) × N (y), side by side, with N*(D).

    Both panels share one colour scale (0 = generalizing, 1 = memorizing); the predicted
    transition step N*(D) is drawn on both, the cutoff N_0 (below it the network is not yet
    near the strategies' span and nothing is modeled) as a dashed line, and the held-out
    region (largest D, last checkpoints) is outlined.
    Example: ``bayesicl.plot.phase_diagram(fit).savefig("phase_diagram.png")``.
    """
    conditions = fit.conditions[fit.conditions["split"] == split]
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True, constrained_layout=True)
    else:
        axes, fig = ax, ax[0].figure
    curve = _transition_curve(fit)
    mesh = None
    for panel, column, title in ((axes[0], "observed_weight", "observed  $\\tilde w_M$"),
                                 (axes[1], "predicted_weight", "predicted  $w_M$")):
        mesh = weight_panel(panel, conditions, column, curve, getattr(fit, "cutoff_step", None))
        panel.set_xlabel("task diversity D")
        panel.set_title(f"{title} ({split.upper()})")
    axes[0].set_ylabel("training step N")
    handles, _ = axes[1].get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor=(0, 0, 0, 0.5), hatch="///", label="held out"))
    # Below the panels, where it can hide neither a cell nor the N_0 label.
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.colorbar(mesh, ax=list(axes), label="memorizing weight (0 = G, 1 = M)", shrink=0.9)
    return declutter(fig)


def weight_panel(panel: Any, conditions: pd.DataFrame, column: str, curve: pd.DataFrame | None = None,
                 cutoff: float | None = None, cutoff_label: bool = True, log_steps: bool = False) -> Any:
    """Draw one weight heat map into the axis `panel`: `column` of `conditions` (one split) over
    D (x, log₂) × N (y), the transition curve N*(D) (`curve`: diversity, transition_step) where
    it falls inside the steps, the cutoff N₀ dashed and the held-out cells hatched. Returns
    the mesh (for a colour bar). `phase_diagram` draws its two panels with it, the
    population figures one per configuration. `log_steps`: N on a log axis (for steps
    spaced geometrically, as a prediction's grid may be).
    """
    diversities, steps, values = _grid(conditions, column)
    step_edges = _edges(steps, log_steps)
    mesh = panel.pcolormesh(_edges(diversities, True), step_edges, values,
                            cmap=WEIGHT_CMAP, vmin=0, vmax=1, shading="flat")
    if curve is not None and len(curve):
        inside = curve[(curve["transition_step"] >= steps.min() * 0.5)
                       & (curve["transition_step"] <= steps.max() * 1.5)]
        panel.plot(inside["diversity"], inside["transition_step"], "k-o", ms=3, lw=1.5,
                   label="predicted $N^*(D)$")
    if cutoff is not None and cutoff > steps.min():
        panel.axhline(cutoff, color="k", ls="--", lw=1)
        if cutoff_label:
            panel.text(diversities[0], cutoff, " $N_0$ (modeled above)", va="bottom", fontsize=8,
                       bbox=dict(facecolor="white", alpha=0.75, lw=0, pad=1))
    _outline_heldout(panel, conditions, diversities, steps)
    if log_steps:
        panel.set_yscale("log")
    panel.set_ylim(step_edges[0], step_edges[-1])
    _log2_ticks(panel, diversities)
    return mesh


def _outline_heldout(panel: Any, conditions: pd.DataFrame, diversities: np.ndarray,
                     steps: np.ndarray) -> None:
    """Hatch the modeled conditions that the fit did not see (the extrapolation test)."""
    if not {"in_fit", "modeled"} <= set(conditions):
        return
    held = conditions["modeled"].astype(bool) & ~conditions["in_fit"].astype(bool)
    if not held.any():
        return
    x_edges, y_edges = _edges(diversities, True), _edges(steps, False)
    mask = (conditions.assign(held=held.astype(float))
            .pivot_table(index="step", columns="diversity", values="held", aggfunc="max")
            .reindex(index=steps, columns=diversities).fillna(0).to_numpy())
    cells = panel.pcolor(x_edges, y_edges, np.ma.masked_less(mask, 0.5), shading="flat")
    cells.set_facecolor("none")
    cells.set_hatch("///")
    cells.set_edgecolor((0, 0, 0, 0.3))
    cells.set_linewidth(0)


def posterior_odds(fit: Any, ax: Any = None) -> plt.Figure:
    """Log posterior odds η_M − η_G against N^(1−α), one line per D (docs/model.md#figures, figure 2).

    Under the model each line is straight: intercept = log prior odds −ln2 (K_M^β − K_G^β),
    slope = −γ (L̄_M − L̄_G). Dots are the observed log-odds of the modeled conditions,
    logit(w̃_M) with w̃ clipped to [0.01, 0.99].
    """
    alpha, beta, gamma = (fit.params[k] for k in ("alpha", "beta", "gamma"))
    loss, complexity = fit.loss, fit.complexity
    m, g = fit.strategies[0], fit.strategies[1]
    fig, ax = (plt.subplots(figsize=(6.4, 4.4), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    conditions = fit.conditions[fit.conditions["split"] == "id"]
    diversities = np.sort(conditions["diversity"].unique())
    colours = plt.cm.viridis(np.linspace(0, 1, len(diversities)))
    max_x = conditions["step"].max() ** (1 - alpha)
    x = np.linspace(0, max_x, 100)
    for colour, diversity in zip(colours, diversities):
        prior = -np.log(2) * (complexity.loc[diversity, m] ** beta - complexity.loc[diversity, g] ** beta)
        slope = -gamma * (loss.loc[diversity, m] - loss.loc[diversity, g])
        ax.plot(x, prior + slope * x, color=colour, lw=1.2, label=f"D={int(diversity)}")
        rows = conditions[conditions["diversity"] == diversity]
        w = np.clip(rows["observed_weight"].to_numpy(float), 0.01, 0.99)
        modeled = _modeled(rows)
        ax.plot(rows["step"][modeled] ** (1 - alpha), np.log(w / (1 - w))[modeled], "o",
                color=colour, ms=2.5, alpha=0.8)
    ax.axhline(0, color="grey", lw=0.8, ls="--")

    ax.set_xlabel(f"$N^{{1-\\alpha}}$  (α = {alpha:.2f});  dots: observed logit $\\tilde w_M$ for N ≥ $N_0$",
                  fontsize=9)
    ax.set_ylabel("log posterior odds  M vs G")
    ax.set_ylim(-12, 12)
    ax.legend(fontsize=7, ncol=1 if len(diversities) <= 12 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("evidence accumulates sub-linearly in N")
    return declutter(fig)


def transience(fit: Any, split: str = "id", ax: Any = None) -> plt.Figure:
    """w̃_M(N) per D: observed dots and predicted curves with their intervals (fig. 3)."""
    fig, ax = (plt.subplots(figsize=(6.8, 4.4), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    conditions = fit.conditions[fit.conditions["split"] == split]
    diversities = np.sort(conditions["diversity"].unique())
    colours = plt.cm.viridis(np.linspace(0, 1, len(diversities)))
    steps = np.geomspace(max(conditions["step"].min(), 1), conditions["step"].max(), 60)
    # One prediction for every curve: a single evaluation instead of one per D.
    curves = fit.predict(np.repeat(diversities, steps.size), np.tile(steps, diversities.size))
    for colour, diversity in zip(colours, diversities):
        rows = conditions[conditions["diversity"] == diversity]
        modeled = _modeled(rows)
        ax.plot(rows["step"][modeled], rows["observed_weight"][modeled], "o", color=colour, ms=3)
        ax.plot(rows["step"][~modeled], rows["observed_weight"][~modeled], "o", mfc="none",
                color=colour, ms=3, alpha=0.5)
        curve = curves[curves["diversity"] == diversity]
        ax.plot(steps, curve["predicted_weight"], color=colour, lw=1.3, label=f"D={int(diversity)}")
        if {"weight_low", "weight_high"} <= set(curve) and curve["weight_low"].notna().all():
            ax.fill_between(steps, curve["weight_low"], curve["weight_high"], color=colour,
                            alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training step N\ndots observed (hollow: before $N_0$, not modeled), lines predicted",
                  fontsize=9)
    ax.set_ylabel("memorizing weight $w_M$")
    cutoff = getattr(fit, "cutoff_step", None)
    if cutoff:
        ax.axvline(cutoff, color="grey", ls="--", lw=0.8)
    ax.set_title(f"memorizing weight over training ({split.upper()})", fontsize=11)

    ax.legend(fontsize=7, ncol=1 if len(diversities) <= 12 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return declutter(fig)


def transition_steps(fit: Any, ax: Any = None) -> plt.Figure:
    """Predicted N*(D) against D on log–log axes, with the fitted power N* ∝ D^k (fig. 4).

    Hollow markers are extrapolations beyond the last logged step (dotted line). The 90%
    band is drawn within the plotted range; where it reaches far below it (a draw with no
    memorizing phase to speak of), the legend says how far.
    """
    fig, ax = (plt.subplots(figsize=(5.6, 4.6), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    curve = _transition_curve(fit)
    steps = fit.conditions["step"].to_numpy(float)
    first, last = max(steps.min(), 1.0), steps.max()
    d, n = curve["diversity"].to_numpy(float), curve["transition_step"].to_numpy(float)
    beyond = curve["extrapolated"].to_numpy(bool) if "extrapolated" in curve else n > last
    ax.plot(d, n, "-", color="k", lw=1.2)
    ax.plot(d[~beyond], n[~beyond], "o", color="k", ms=5, label="predicted $N^*(D)$")
    if beyond.any():
        ax.plot(d[beyond], n[beyond], "o", mfc="white", color="k", ms=5, label="extrapolated (beyond training)")
    low_end, high_end = min(n.min(initial=first), first) / 3, max(n.max(initial=last), last) * 3
    if {"transition_low", "transition_high"} <= set(curve) and curve["transition_low"].notna().any():
        band_low = curve["transition_low"].to_numpy(float)
        label = "90% interval"
        if np.nanmin(band_low) < low_end:
            label += f" (clipped; low end down to {np.nanmin(band_low):.3g})"
        ax.fill_between(d, np.maximum(band_low, low_end), np.minimum(curve["transition_high"], high_end * 10),
                        color="k", alpha=0.12, lw=0, label=label)
    if len(curve) >= 2:
        k, c = np.polyfit(np.log(d), np.log(n), 1)
        ax.plot(d, np.exp(c) * d ** k, "--", color="tab:red", label=f"fit: $N^* \\propto D^{{{k:.2f}}}$")
    ax.axhline(last, color="grey", ls=":", lw=1, label=f"last logged step ({last:,.0f})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylim(low_end, high_end)
    if len(d):
        _log2_ticks(ax, d)
    ax.set_xlabel("task diversity D")
    ax.set_ylabel("transition step $N^*$")
    ax.set_title("time to memorize grows with D")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return declutter(fig)


def posterior(fit: Any) -> plt.Figure:
    """Posterior of (α, β, γ) (fig. 5): the ArviZ pair plot of the NUTS draws.

    A MAP fit has no posterior (one point of the paper's objective), so there is no figure:
    BayesiclError; `figures_for` leaves it out and the report says why.
    """
    idata = getattr(fit, "idata", None)
    if idata is None or not hasattr(idata, "posterior"):
        raise BayesiclError("a MAP fit has no posterior to draw; fit with --method nuts")
    axes = az.plot_pair(idata, var_names=["alpha", "beta", "gamma"], kind="kde", marginals=True,
                        figsize=(7, 7), textsize=10)
    fig = np.ravel(axes)[0].figure
    fig.suptitle("posterior of (α, β, γ)")
    return declutter(fig)


#: Colours of the dominant strategy: memorizing red, generalizing blue; darker = bigram (order 2).
STRATEGY_COLOURS = {"M2": "#b2182b", "M1": "#f4a582", "M": "#b2182b", "G2": "#2166ac",
                    "G1": "#92c5de", "G": "#2166ac", "C": "#bababa"}


def strategy_phases(fit: Any, split: str = "id") -> plt.Figure:
    """With more than two strategies: the dominant strategy per (D, N), observed (largest
    convex weight) and predicted (largest w_s), side by side, plus each weight group of the
    family (markov: w_mem = w_M1 + w_M2 and w_bigram = w_M2 + w_G2) observed and predicted.

    Rows: observed, predicted; columns: dominant strategy, then one heat map per group.
    Example: ``bayesicl.plot.strategy_phases(fit).savefig("strategy_phases.png")``.
    """
    strategies = list(fit.strategies)
    conditions = fit.conditions[fit.conditions["split"] == split]
    needed = [f"{kind}_{s}" for kind in ("observed", "predicted") for s in strategies]
    if len(strategies) < 3 or not set(needed) <= set(conditions):
        raise BayesiclError("strategy_phases needs a fit with more than two strategies "
                            "(their observed convex weights and predicted weights)")
    groups = weight_groups(fit.task)
    fig, axes = plt.subplots(2, 1 + len(groups), figsize=(4.2 * (1 + len(groups)), 7.4),
                             sharex=True, sharey=True, constrained_layout=True, squeeze=False)
    colours = [STRATEGY_COLOURS.get(s, f"C{i}") for i, s in enumerate(strategies)]
    mesh = None
    for row, kind in enumerate(("observed", "predicted")):
        weights = conditions[[f"{kind}_{s}" for s in strategies]].to_numpy(float)
        winner = observe.dominant_strategy(weights, strategies)
        code = np.array([strategies.index(w) if w else np.nan for w in winner], dtype=float)
        diversities, steps, values = _grid(conditions.assign(dominant=code), "dominant")
        x_edges, y_edges = _edges(diversities, True), _edges(steps, False)
        panel = axes[row, 0]
        panel.pcolormesh(x_edges, y_edges, values, cmap=ListedColormap(colours), vmin=-0.5,
                         vmax=len(strategies) - 0.5, shading="flat")
        panel.set_title(f"{kind}: dominant strategy ({split.upper()})")
        sums = observe.summed_weights(weights, strategies, groups)
        for column, (name, members) in enumerate(groups.items(), start=1):
            _, _, grid = _grid(conditions.assign(**{name: sums[name]}), name)
            mesh = axes[row, column].pcolormesh(x_edges, y_edges, grid, cmap=WEIGHT_CMAP, vmin=0,
                                                vmax=1, shading="flat")
            label = " + ".join(f"$w_{{{m}}}$" for m in members)
            axes[row, column].set_title(f"{kind}: {name} = {label}")
        for panel in axes[row]:
            _log2_ticks(panel, diversities)
            panel.set_ylim(y_edges[0], y_edges[-1])
            cutoff = getattr(fit, "cutoff_step", None)
            if cutoff is not None and cutoff > steps.min():
                panel.axhline(cutoff, color="k", ls="--", lw=1)
        axes[row, 0].set_ylabel("training step N")
    for panel in axes[-1]:
        panel.set_xlabel("task diversity D")
    handles = [Patch(facecolor=c, label=s) for s, c in zip(strategies, colours)]
    handles.append(plt.Line2D([], [], color="k", ls="--", lw=1, label="$N_0$ (modeled above)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes[:, 1:].ravel()), label="summed weight", shrink=0.9)
    return declutter(fig)


def run_effects(fit: Any, ax: Any = None) -> plt.Figure:
    """The fitted per-run log-odds effects against D (NUTS with run effects): what the
    rational model does not explain, by diversity — posterior means with 90% intervals, ID
    (filled) and the OOD stage's addition (hollow), with the ±σ_run band. A trend in D here
    is misfit the model's K^β and L̄ terms leave over."""
    fig, ax = (plt.subplots(figsize=(5.6, 4.2), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    effects = (getattr(fit, "report", None) or {}).get("effects") or {}
    for key, label, style in ((None, "ID run effect", dict(fmt="o", color="k")),
                              ("ood", "OOD stage's extra effect", dict(fmt="o", color="tab:orange", mfc="white"))):
        rows = (effects.get(key) or {}).get("runs", []) if key else effects.get("runs", [])
        if not rows:
            continue
        d = np.array([r["diversity"] for r in rows], dtype=float) * (1.06 if key else 1.0)
        mean = np.array([r["mean"] for r in rows])
        err = np.array([[m - r["low"] for m, r in zip(mean, rows)], [r["high"] - m for m, r in zip(mean, rows)]])
        ax.errorbar(d, mean, yerr=err, ms=5, capsize=2, lw=1, label=label, **style)
    sigma = effects.get("sigma_run")
    if sigma:
        ax.axhspan(-sigma["mean"], sigma["mean"], color="grey", alpha=0.12, lw=0,
                   label=f"±σ_run = {sigma['mean']:.2f}")
    ax.axhline(0, color="grey", lw=0.8)
    diversities = np.unique([r["diversity"] for r in effects.get("runs", [])])
    if diversities.size:
        _log2_ticks(ax, diversities)
    ax.set_xlabel("task diversity D")
    ax.set_ylabel("run effect (log-odds of M vs G)")
    ax.set_title("what the rational model does not explain, by D", fontsize=11)
    ax.legend(fontsize=8, loc="best")
    return declutter(fig)


FIGURES = {
    "phase_diagram": phase_diagram,
    "posterior_odds": posterior_odds,
    "transience": transience,
    "transition_steps": transition_steps,
    "posterior": posterior,
}


def fit_figures(fit: Any) -> dict[str, Any]:
    """The figures one fit has: all of `FIGURES`, less the posterior for a MAP fit, plus
    `strategy_phases` for a fit of more than two strategies and `run_effects` for a fit with
    run effects (a population fit's are `bayesicl.plot.files.figures_for`'s)."""
    has_posterior = getattr(fit, "idata", None) is not None
    figures = {name: draw for name, draw in FIGURES.items() if name != "posterior" or has_posterior}
    if len(getattr(fit, "strategies", ())) > 2:
        figures["strategy_phases"] = strategy_phases
    if ((getattr(fit, "report", None) or {}).get("effects") or {}).get("runs"):
        figures["run_effects"] = run_effects
    return figures


def save_fit_figures(fit: Any, out: str, pdf: bool = False) -> list[str]:
    """Write the figures of one fit (`fit_figures`) as PNG (and PDF) into `out`; returns the
    paths written. A posterior figure left by an earlier NUTS fit in `out` is removed."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figures = fit_figures(fit)
    for name in {*FIGURES, "strategy_phases", "run_effects"} - set(figures):
        for suffix in ("png", "pdf"):
            (folder / f"{name}.{suffix}").unlink(missing_ok=True)
    for name, draw in figures.items():
        fig = draw(fit)
        for suffix in (("png", "pdf") if pdf else ("png",)):
            path = folder / f"{name}.{suffix}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=DPI, format=suffix)
            written.append(str(path))
        plt.close(fig)
    return written
