"""`bayesicl demo`: fit the rational model to the runs shipped in `data/` and report.

The demo is the main job of the package in miniature: logged transformer runs → evidence →
NUTS fit of (α, β, γ) → report files and the figures of SPEC §10 → the headline numbers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .errors import BayesiclError

#: Where the shipped demo runs live, per family (see data/README.md for how they were made).
DATA_ROOT = Path(__file__).resolve().parents[1] / "data" / "runs"


def demo_runs(task: str = "urns") -> Path:
    """The folder of shipped demo runs for `task` (urns, regression or classification)."""
    folder = DATA_ROOT / task
    if not folder.is_dir():
        raise BayesiclError(f"{folder}: no shipped demo runs for task {task!r} (is this a source checkout?)")
    return folder


def run_demo(task: str = "urns", out: str | Path = "demo-out", method: str = "nuts", seed: int = 0,
             echo=print):
    """Fit the shipped `task` runs, write the report and figures into `out`; return the fit."""
    from . import plot
    from .fit import fit

    start = time.perf_counter()
    runs = demo_runs(task)
    echo(f"bayesicl demo: fitting the rational model to the {task} runs in {runs}")
    result = fit(runs, method=method, seed=seed)
    out = Path(out)
    result.save(out)
    figures = plot.save_all(result, out)
    echo(format_report(result))
    for warning in result.summary().get("guards", []):
        echo(f"WARNING: {warning}")
    echo(f"wrote {out / 'summary.json'}, {out / 'conditions.csv'}"
         + (f", {out / 'posterior.nc'}" if method == "nuts" else "")
         + f" and {len(figures)} figures ({time.perf_counter() - start:.0f} s)")
    return result


def format_report(result) -> str:
    """The headline numbers of a fit as a short plain-text report."""
    summary = result.summary()
    lines = [f"task {summary['task']}  method {summary['method']}  cutoff N_0 = {summary['cutoff_step']}  "
             f"conditions fit/held-out = {summary['n_conditions']['fit']}/{summary['n_conditions']['heldout']}"]
    for name in ("alpha", "beta", "gamma"):
        p = summary["params"][name]
        interval = ("" if p.get("hdi_low") is None
                    else f"  90% interval [{p['hdi_low']:.4g}, {p['hdi_high']:.4g}]")
        lines.append(f"  {name:<5} = {p['mean']:.4g}{interval}")
    diag = summary.get("diagnostics") or {}
    if diag.get("r_hat_max") is not None:
        lines.append(f"  r_hat max {diag['r_hat_max']:.4f}, ESS bulk min {diag['ess_bulk_min']:.0f}, "
                     f"divergences {diag['divergences']}")
    lines.append("correlation of predicted vs observed M-weight:")
    for part in ("fit", "heldout", "all"):
        cells = []
        for split in ("id", "ood"):
            value = (summary["metrics"].get(part) or {}).get(split, {}).get("correlation")
            cells.append(f"{split.upper()} {value:.3f}" if isinstance(value, (int, float)) else f"{split.upper()} n/a")
        lines.append(f"  {part:<8} " + "   ".join(cells))
    steps = result.transition_steps()
    shown = ", ".join(f"D={int(d)}: {n:,.0f}" if 0 < n < float("inf") else f"D={int(d)}: {'∞' if n > 0 else 0}"
                      for d, n in zip(steps["diversity"], steps["transition_step"]))
    lines.append(f"predicted transition steps N*(D): {shown}")
    return "\n".join(lines)


def demo_main(args: argparse.Namespace) -> int:
    run_demo(task=args.task, out=args.out, method=args.method, seed=args.seed)
    return 0
