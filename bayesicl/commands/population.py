"""Command-line verbs of fits across configurations: `bayesicl fit RUNS/` with several
configurations, `bayesicl predict FIT --set mlp_width=512 …` and `bayesicl cross-validate RUNS`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import plot, report
from ..atomic import write_text
from ..errors import BayesiclError
from ..inference import load_fit
from ..inference.population import fit_population
from ..inference.population_cv import cross_validate
from ..inference.population_data import flat_settings, varying_settings
from ..report.population_text import format_population_report
from ..runs import find_runs
from ..runs.format import setting_config


def scan_configurations(runs) -> tuple[int, list[str]]:
    """(number of configurations, the settings that vary between them) of a runs folder, read
    from the run.json files only (cheap: no outputs are opened)."""
    if not isinstance(runs, (str, os.PathLike)) or not Path(runs).is_dir():
        return 1, []
    settings = {}
    for path in find_runs(runs):
        try:
            meta = json.loads((Path(path) / "run.json").read_text())
            flat = flat_settings({"task": meta["task"], "zipf": meta.get("zipf"),
                                  "config": setting_config(meta.get("config", {}))})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 1, []            # let the single-configuration path report the problem
        settings[json.dumps(flat, sort_keys=True, default=str)] = flat
    return len(settings), varying_settings(list(settings.values()))


def parse_covariates(text: str | None) -> list[str] | None:
    """--covariates "mlp_width,context_length" → ["mlp_width", "context_length"].

    >>> parse_covariates("mlp_width, context_length")
    ['mlp_width', 'context_length']
    """
    if text is None:
        return None
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise BayesiclError("--covariates: give setting names separated by commas, e.g. mlp_width,context_length")
    return names


def parse_settings(items: Sequence[str]) -> dict:
    """--set values "NAME=VALUE" → {name: number (or text)}.

    >>> parse_settings(["mlp_width=512", "context_length=48"])
    {'mlp_width': 512, 'context_length': 48}
    """
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BayesiclError(f"--set {item!r}: expected NAME=VALUE, e.g. mlp_width=512")
        text = value.strip()
        try:
            number = float(text)
            out[name.strip()] = int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        except ValueError:
            out[name.strip()] = text
    if not out:
        raise BayesiclError("predict: give the new configuration with --set NAME=VALUE (e.g. --set mlp_width=512)")
    return out


def run_population_fit(runs, out: Path, count: int, varying: list[str], pool: str | None, covariates, method: str,
                       strategies, holdout, prior_override, cutoff, seed, num_chains, num_samples, num_warmup,
                       effects, echo=print, warn=None, note=None):
    """Fit a folder holding several configurations (`fit_population`), save the fit folder,
    draw its figures, write report.html, print the headline numbers
    (`bayesicl.report.population_text.format_population_report`); returns the `PopulationResult`.
    `bayesicl fit RUNS/` and `bayesicl demo --task urns-grid` both run this."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    note = note or (lambda line: print(line, flush=True))
    clock = time.perf_counter()
    pool = pool or "partial"
    sampler = f", NUTS {num_chains} chains × {num_samples} draws" if method == "nuts" else ", MAP"
    note(f"[1/4] evidence and fit: {count} configurations ({', '.join(varying)} vary), pooling {pool}{sampler}")
    result = fit_population(runs, pool=pool, covariates=covariates, method=method, seed=seed, num_chains=num_chains,
                            num_samples=num_samples, num_warmup=num_warmup, holdout=holdout, effects=effects,
                            priors=prior_override, progress=True, strategies=strategies, cutoff=cutoff)
    folder = Path(result.save(out))
    note(f"[2/4] figures: drawing {len(plot.figures_for(result))} figures into {folder}")
    paths = [Path(p) for p in plot.save_all(result, folder)]
    note("[3/4] report: writing report.html")
    page = report.write_report(result, folder / report.FILE_NAME, figures={p.stem: p.read_bytes() for p in paths})
    note("[4/4] summary")
    echo(format_population_report(result))
    for line in result.guards:
        warn(f"WARNING: {line}")
    echo(f"wrote {folder}: summary.json, configurations.csv, conditions.csv, transitions.csv"
         f"{', posterior.nc' if result.idata is not None else ''}, {len(paths)} figures and {page.name} "
         f"(open it in a browser; every file is described in docs/outputs.md) ({time.perf_counter() - clock:.0f} s)")
    return result


def predict_main(args: argparse.Namespace) -> int:
    """The `bayesicl predict` verb."""
    result = load_fit(args.fit)
    if not hasattr(result, "state"):
        raise BayesiclError(f"{args.fit}: a single-configuration fit; predict a new configuration from a fit of "
                            "several (bayesicl fit RUNS/ with several configurations)")
    prediction = result.predict(args.diversity, args.step, parse_settings(args.set), seed=args.seed)
    out = Path(args.out) if args.out else Path(args.fit).resolve().with_name(Path(args.fit).resolve().name + "-predicted")
    paths = prediction.save(out)

    if hasattr(plot, "plot_predicted_configuration"):
        paths += [Path(p) for p in plot.plot_predicted_configuration(prediction, out)]
    for line in prediction.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    print(f"predicted {', '.join(f'{k}={v}' for k, v in prediction.settings.items() if k in parse_settings(args.set))}"
          f" ({prediction.source})")
    for row in prediction.transitions.to_dict(orient="records"):
        print(f"  D={int(row['diversity'])}: N* {row['transition_step']:.4g} [{row['low']:.4g}, {row['high']:.4g}]")
    print(f"wrote {out}: {', '.join(p.name for p in paths)}")
    return 0


def cross_validate_main(args: argparse.Namespace) -> int:
    """The `bayesicl cross-validate` verb."""
    pools = tuple(args.pools)
    out = Path(args.out) if args.out else Path(args.runs).resolve().with_name(Path(args.runs).resolve().name + "-cv")

    def save(table, name="cross_validation.csv"):
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / name, table.to_csv(index=False))

    # Rows so far go to cross_validation.partial.csv (a long run stopped early keeps them).
    table = cross_validate(args.runs, by=args.by, pools=pools, covariates=parse_covariates(args.covariates),
                           seed=args.seed, num_chains=args.chains, num_samples=args.draws, num_warmup=args.warmup,
                           effects=args.effects, progress=True,
                           on_row=lambda rows: save(rows, "cross_validation.partial.csv"))
    save(table)
    (out / "cross_validation.partial.csv").unlink(missing_ok=True)
    summary = table.groupby("pool")[["elpd_id", "elpd_id_mean", "correlation_id", "correlation_ood", "tvd_id",
                                     "coverage_id", "coverage_ood"]].mean()
    print(summary.round(3).to_string())
    print(f"wrote {out / 'cross_validation.csv'}")
    return 0
