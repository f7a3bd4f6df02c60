"""`bayesicl fit RUNS [--out FIT]`: build the evidence, fit, draw the figures, write report.html.

The command line's fit flags become one `FitOptions` (`fit_options`), the object `bayesicl.fit`
takes and the fit folder records. Warnings of the fit-quality guards are printed to stderr,
each on its own line starting with "WARNING:", after the headline numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from typing import Any

from .. import plot, report
from ..errors import BayesiclError
from ..evidence import build_evidence
from ..inference import fit
from ..inference.folder import check_out_folder
from ..inference.options import FitOptions, fit_options as with_changes
from ..report.text import format_report
from .population import parse_covariates, run_population_fit, scan_configurations


def parse_complexity_overrides(items: Sequence[str]) -> dict[tuple[str, int], float] | dict:
    """--set-k values "KIND:D=BITS" → {(kind, D): bits}; "KIND=BITS" sets every D.

    >>> parse_complexity_overrides(["memorizing:64=1234.5", "generalizing=300"])
    {('memorizing', 64): 1234.5, 'generalizing': 300.0}
    """
    out: dict = {}
    for item in items or ():
        match = re.fullmatch(r"\s*([A-Za-z_]+)(?::(\d+))?\s*=\s*([-+0-9.eE]+)\s*", item)
        if not match:
            raise BayesiclError(f"--set-k {item!r}: expected KIND:D=BITS (e.g. memorizing:64=1234.5) or KIND=BITS")
        kind, diversity, bits = match.groups()
        try:
            value = float(bits)
        except ValueError:
            raise BayesiclError(f"--set-k {item!r}: {bits!r} is not a number") from None
        out[(kind, int(diversity)) if diversity else kind] = value
    return out


def parse_prior_overrides(items: Sequence[str]) -> dict[str, str]:
    """--prior values "NAME=DIST(ARGS)" → {name: "DIST(ARGS)"}.

    >>> parse_prior_overrides(["alpha=Beta(2,2)"])
    {'alpha': 'Beta(2,2)'}
    """
    out = {}
    for item in items or ():
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise BayesiclError(f"--prior {item!r}: expected NAME=DIST(ARGS), e.g. alpha=Beta(2,2)")
        if re.search(r"(?i)\b(inf|infinity|nan)\b", spec):
            raise BayesiclError(f"--prior {item!r}: the distribution's parameters must be finite numbers")
        out[name.strip()] = spec.strip()
    return out


def default_out(runs) -> Path:
    """Where `bayesicl fit RUNS` writes without --out: RUNS-fit beside RUNS.

    >>> default_out("/data/runs/urns/").as_posix()
    '/data/runs/urns-fit'
    """
    folder = Path(runs).resolve()
    return folder.with_name(folder.name + "-fit")


def fit_options(args: argparse.Namespace) -> FitOptions:
    """The `FitOptions` of `bayesicl fit`'s flags (as `bayesicl.cli` parses them): --set-k,
    --prior, --all-steps/--cutoff-step, --chains/--draws/--warmup and the flags named like
    the options."""
    if args.cutoff_step is not None and args.cutoff_step < 0:
        raise BayesiclError(f"--cutoff-step {args.cutoff_step}: must be an integer ≥ 0")
    return FitOptions(method=args.method, strategies=args.strategies, holdout=args.holdout,
                      variant=args.variant, priors=parse_prior_overrides(args.prior),
                      complexity_override=parse_complexity_overrides(args.set_k), seed=args.seed,
                      num_chains=args.chains, num_samples=args.draws, num_warmup=args.warmup,
                      cutoff="all" if args.all_steps else ("paper" if args.cutoff_step is None else args.cutoff_step),
                      effects=args.effects, paper_compatible=bool(args.paper_compatible))


def run_fit_command(runs, out=None, options: FitOptions | None = None, *, pool: str | None = None,
                    covariates=None, echo=print, warn=None, note=None, **changes: Any):
    """Build evidence from `runs`, fit, save into `out` (default `default_out`), draw the
    figures and write report.html; return the fit.

    `options` (a `FitOptions`, changed by the keyword `changes`) are the fit's; the command
    shows progress bars (evidence always, the sampler with NUTS) whatever `options.progress`
    says. `echo` gets the headline numbers, `warn` the guards' warnings (stderr by default),
    `note` one line as each stage starts (stdout by default; the progress bars go to stderr,
    which an error leaves as one line). A runs folder holding several configurations (runs
    that differ in more than diversity and seed) is fitted by
    `bayesicl.inference.population.fit_population` with `pool` (default "partial") and
    `covariates`; one configuration takes the single-fit path (`pool` "none" or None).
    """
    options = with_changes(options, changes)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    note = note or (lambda line: print(line, flush=True))
    clock = time.perf_counter()
    out = Path(out) if out is not None else default_out(runs)
    check_out_folder(out, runs)     # before the fit: a bad --out must not cost a whole fit
    count, varying = scan_configurations(runs)
    if count > 1:
        if options.complexity_override or options.variant != "full" or options.paper_compatible:
            raise BayesiclError("--set-k, --variant and --paper-compatible are for one configuration; this folder "
                                f"holds {count} configurations ({', '.join(varying)} vary)")
        return run_population_fit(runs, out, count, varying, pool, covariates, options.method, options.strategies,
                                  options.holdout, options.priors, options.cutoff, options.seed, options.num_chains,
                                  options.num_samples, options.num_warmup, options.effects,
                                  echo=echo, warn=warn, note=note)
    if pool in ("partial", "full"):
        raise BayesiclError(f"--pool {pool}: {runs} holds one configuration; pooling needs several")
    note(f"[1/4] evidence: strategies on the runs' inputs, their losses L̄ and complexities K ({runs})")
    evidence = build_evidence(runs, strategies=options.strategies, cutoff=options.cutoff,
                              loss_sequences=options.loss_sequences, progress=True,
                              complexity_convention="paper" if options.paper_compatible else "bayesicl")
    method = options.method
    sampler = f", then NUTS {options.num_chains} chains × {options.num_samples} draws" if method == "nuts" else ""
    note(f"[2/4] fit: MAP{sampler}, predictions and metrics on {evidence.num_conditions} conditions")
    result = fit(evidence, options.replace(progress=method == "nuts"))
    folder = result.save(out)
    note(f"[3/4] figures: drawing {len(plot.figures_for(result))} figures into {folder}")
    paths = [Path(p) for p in plot.save_all(result, folder)]
    note("[4/4] report: writing report.html")
    page = report.write_report(result, folder / report.FILE_NAME, figures={p.stem: p.read_bytes() for p in paths})
    echo(format_report(result))
    for line in result.guards:
        warn(f"WARNING: {line}")
    files = ["summary.json", "conditions.csv"] + (["posterior.nc"] if result.idata is not None else [])
    echo(f"wrote {folder}: {', '.join(files)}, {len(paths)} figures and {page.name} "
         f"(open it in a browser; every file is described in docs/outputs.md) ({time.perf_counter() - clock:.0f} s)")
    return result


def fit_main(args: argparse.Namespace) -> int:
    """The `bayesicl fit` verb (arguments as built by `bayesicl.cli`)."""
    run_fit_command(args.runs, args.out, fit_options(args), pool=args.pool,
                    covariates=parse_covariates(args.covariates))
    return 0
