"""`bayesicl demo`: fit the rational model to the runs shipped in `data/` and report.

The demo is the main job of the package in miniature: logged transformer runs → evidence →
NUTS fit of (α, β, γ) → report files and the figures of docs/model.md#figures → the headline numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .demo_population import POPULATION_TASKS, run_population_demo
from .errors import BayesiclError
from .families import FAMILIES
from .commands.fit import run_fit_command
from .report.text import (METRIC_LABELS, dominance_exchanges, family_metrics_report,  # noqa: F401
                          format_report, strategies_report)

#: Where the shipped demo runs live, per family (see data/README.md for how they were made).
DATA_ROOT = Path(__file__).resolve().parents[1] / "data" / "runs"
#: Each family's spec says how its shipped set is fitted where the fit's defaults do not suit
#: it (`FamilySpec.demo_fit`: run effects, NUTS warm-up). The text the demo prints is
#: `bayesicl.report.text`'s.


def demo_runs(task: str = "urns") -> Path:
    """The folder of shipped demo runs for `task` (urns, regression, classification, markov or
    urns-grid, the configuration grid)."""
    folder = DATA_ROOT / task
    if not folder.is_dir():
        raise BayesiclError(f"{folder}: no shipped demo runs for task {task!r} (is this a source checkout?)")
    return folder


def run_demo(task: str = "urns", out: str | Path | None = None, method: str = "nuts", seed: int = 0,
             force: bool = False, echo=print, note=None, paper_compatible: bool = False):
    """Fit the shipped `task` runs; write the fit, its figures and report.html into `out`
    (default demo-out/TASK, demo-out/TASK-paper-k with `paper_compatible`: K in the paper's
    convention); return the fit.

    An `out` that already holds files is refused unless `force`: a second demo never
    silently replaces the results of the first.
    """
    runs = demo_runs(task)
    out = Path("demo-out") / (task + ("-paper-k" if paper_compatible else "")) if out is None else Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise BayesiclError(f"{out} already exists and is not empty (an earlier demo?); pass --force to "
                            "overwrite it or --out to write elsewhere")
    if task in POPULATION_TASKS:          # several configurations: the partially pooled population fit
        if method != "nuts" or paper_compatible:
            raise BayesiclError(f"demo --task {task}: the population fit is NUTS with bayesicl's K convention "
                                "(no --method map, no --paper-compatible)")
        echo(f"bayesicl demo: fitting the rational model with partial pooling to the configurations in {runs}")
        return run_population_demo(runs, out, seed=seed, echo=echo, note=note)
    echo(f"bayesicl demo: fitting the rational model to the {task} runs in {runs}")
    demo_fit = FAMILIES[task].demo_fit if task in FAMILIES else {}
    return run_fit_command(runs, out, method=method, seed=seed, echo=echo, warn=echo, note=note,
                           effects=demo_fit.get("effects") if method == "nuts" else None,
                           num_warmup=demo_fit.get("num_warmup", 1000), paper_compatible=paper_compatible)


def demo_main(args: argparse.Namespace) -> int:
    """The `bayesicl demo` verb (arguments as built by `bayesicl.cli`)."""
    run_demo(task=args.task, out=args.out, method=args.method, seed=args.seed, force=args.force,
             paper_compatible=bool(getattr(args, "paper_compatible", False)))
    return 0
