"""The five figures of SPEC §10, drawn from a fit (`bayesicl.fit.FitResult`).

Each function takes a fit, draws into a new (or given) matplotlib figure and returns it;
none of them calls `plt.show()`. Diversity D is on a log₂ axis everywhere, steps are labelled,
and the predicted transition step N*(D) is overlaid where it is defined.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

WEIGHT_CMAP = "RdBu_r"  # red = memorizing (w_M = 1), blue = generalizing (w_M = 0)


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
    ax.set_xticklabels([f"{int(d)}" for d in diversities], rotation=45 if len(diversities) > 8 else 0)
    ax.minorticks_off()


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
        diversities, steps, values = _grid(conditions, column)
        mesh = panel.pcolormesh(_edges(diversities, True), _edges(steps, False), values,
                                cmap=WEIGHT_CMAP, vmin=0, vmax=1, shading="flat")
        if len(curve):
            inside = curve[(curve["transition_step"] >= steps.min() * 0.5)
                           & (curve["transition_step"] <= steps.max() * 1.5)]
            panel.plot(inside["diversity"], inside["transition_step"], "k-o", ms=3, lw=1.5,
                       label="predicted $N^*(D)$")
        cutoff = getattr(fit, "cutoff_step", None)
        if cutoff is not None and cutoff > steps.min():
            panel.axhline(cutoff, color="k", ls="--", lw=1)
            panel.text(diversities[0], cutoff, " $N_0$ (modeled above)", va="bottom", fontsize=8)
        _outline_heldout(panel, conditions, diversities, steps)
        panel.set_ylim(_edges(steps, False)[0], _edges(steps, False)[-1])
        _log2_ticks(panel, diversities)
        panel.set_xlabel("task diversity D")
        panel.set_title(f"{title} ({split.upper()})")
    axes[0].set_ylabel("training step N")
    from matplotlib.patches import Patch

    handles, _ = axes[1].get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor=(0, 0, 0, 0.5), hatch="///", label="held out"))
    axes[1].legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    fig.colorbar(mesh, ax=list(axes), label="memorizing weight (0 = G, 1 = M)", shrink=0.9)
    return fig


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
    """Log posterior odds η_M − η_G against N^(1−α), one line per D (SPEC §10 fig. 2).

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
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.set_title("evidence accumulates sub-linearly in N")
    return fig


def transience(fit: Any, split: str = "id", ax: Any = None) -> plt.Figure:
    """w̃_M(N) per D: observed dots and predicted curves with their intervals (fig. 3)."""
    fig, ax = (plt.subplots(figsize=(6.8, 4.4), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    conditions = fit.conditions[fit.conditions["split"] == split]
    diversities = np.sort(conditions["diversity"].unique())
    colours = plt.cm.viridis(np.linspace(0, 1, len(diversities)))
    steps = np.geomspace(max(conditions["step"].min(), 1), conditions["step"].max(), 60)
    for colour, diversity in zip(colours, diversities):
        rows = conditions[conditions["diversity"] == diversity]
        modeled = _modeled(rows)
        ax.plot(rows["step"][modeled], rows["observed_weight"][modeled], "o", color=colour, ms=3)
        ax.plot(rows["step"][~modeled], rows["observed_weight"][~modeled], "o", mfc="none",
                color=colour, ms=3, alpha=0.5)
        curve = fit.predict(diversity, steps)
        ax.plot(steps, curve["predicted_weight"], color=colour, lw=1.3, label=f"D={int(diversity)}")
        if {"predicted_low", "predicted_high"} <= set(curve) and curve["predicted_low"].notna().all():
            ax.fill_between(steps, curve["predicted_low"], curve["predicted_high"], color=colour,
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

    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def transition_steps(fit: Any, ax: Any = None) -> plt.Figure:
    """Predicted N*(D) against D on log–log axes, with the fitted power N* ∝ D^k (fig. 4)."""
    fig, ax = (plt.subplots(figsize=(5.6, 4.2), constrained_layout=True) if ax is None
               else (ax.figure, ax))
    curve = _transition_curve(fit)
    ax.plot(curve["diversity"], curve["transition_step"], "o-", color="k", ms=4, label="predicted $N^*(D)$")
    if {"transition_low", "transition_high"} <= set(curve) and curve["transition_low"].notna().any():
        ax.fill_between(curve["diversity"], curve["transition_low"], curve["transition_high"],
                        color="k", alpha=0.12, lw=0, label="90% interval")
    if len(curve) >= 2:
        k, c = np.polyfit(np.log(curve["diversity"]), np.log(curve["transition_step"]), 1)
        ax.plot(curve["diversity"], np.exp(c) * curve["diversity"] ** k, "--", color="tab:red",
                label=f"fit: $N^* \\propto D^{{{k:.2f}}}$")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("task diversity D")
    ax.set_ylabel("transition step $N^*$")
    ax.set_title("time to memorize grows with D")
    ax.legend(fontsize=8)
    return fig


def posterior(fit: Any) -> plt.Figure:
    """Posterior of (α, β, γ) (fig. 5): ArviZ pair plot for NUTS; MAP point estimates otherwise."""
    import arviz as az

    idata = getattr(fit, "idata", None)
    if idata is not None and hasattr(idata, "posterior"):
        axes = az.plot_pair(idata, var_names=["alpha", "beta", "gamma"], kind="kde", marginals=True,
                            figsize=(7, 7), textsize=10)
        fig = np.ravel(axes)[0].figure
        fig.suptitle("posterior of (α, β, γ)")
        return fig
    fig, ax = plt.subplots(figsize=(5, 2.4), constrained_layout=True)
    names = ["alpha", "beta", "gamma"]
    ax.barh(names, [fit.params[n] for n in names], color="grey")
    for i, n in enumerate(names):
        ax.text(fit.params[n], i, f"  {fit.params[n]:.3g}", va="center")
    ax.set_xscale("log")
    ax.set_title("MAP estimates (no posterior: fit with --method nuts)")
    return fig


FIGURES = {
    "phase_diagram": phase_diagram,
    "posterior_odds": posterior_odds,
    "transience": transience,
    "transition_steps": transition_steps,
    "posterior": posterior,
}


def save_all(fit: Any, out: str, pdf: bool = False) -> list[str]:
    """Write every figure of SPEC §10 as PNG (and PDF) into `out`; returns the paths written."""
    from pathlib import Path

    from ..atomic import atomic_path

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        fig = draw(fit)
        for suffix in (("png", "pdf") if pdf else ("png",)):
            path = folder / f"{name}.{suffix}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=130, format=suffix)
            written.append(str(path))
        plt.close(fig)
    return written
