"""`bayesicl fit RUNS [--out FIT]`: build the evidence, fit, draw the figures, write report.html.

Warnings of the fit-quality guards are printed to stderr, each on its own line starting with
"WARNING:", after the headline numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import plot, report
from ..errors import BayesiclError
from ..evidence import build_evidence
from ..report.text import format_report
from .folder import check_out_folder
from .pipeline import fit
from .population_command import parse_covariates, run_population_fit, scan_configurations


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


def run_fit_command(runs, out=None, method: str = "nuts", strategies=None,
                    holdout: float = 0.2, k_override: dict | None = None, prior_override: dict | None = None,
                    all_steps: bool = False, seed: int = 0, cutoff_step: int | None = None,
                    variant: str | None = None, num_chains: int = 4, num_samples: int = 1000,
                    num_warmup: int = 1000, echo=print, warn=None, note=None, effects: str | None = None,
                    paper_compatible: bool = False, pool: str | None = None, covariates=None):
    """Build evidence from `runs`, fit, save into `out` (default `default_out`), draw the
    figures and write report.html; return the fit.

    `echo` gets the headline numbers, `warn` the guards' warnings (stderr by default), `note`
    one line as each stage starts (stdout by default; the progress bars of the evidence and
    of NUTS go to stderr, which an error leaves as one line). `paper_compatible` measures K
    in the paper's convention (`build_evidence(complexity_convention="paper")`). A runs
    folder holding several configurations (runs that differ in more than diversity and seed)
    is fitted by `bayesicl.inference.population.fit_population` with `pool` (default "partial") and
    `covariates`; one configuration takes the single-fit path (`pool` "none" or None).
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    note = note or (lambda line: print(line, flush=True))
    clock = time.perf_counter()
    out = Path(out) if out is not None else default_out(runs)
    check_out_folder(out, runs)     # before the fit: a bad --out must not cost a whole fit
    if cutoff_step is not None and (isinstance(cutoff_step, bool) or int(cutoff_step) < 0):
        raise BayesiclError(f"--cutoff-step {cutoff_step}: must be an integer ≥ 0")
    cutoff = "all" if all_steps else ("paper" if cutoff_step is None else int(cutoff_step))
    count, varying = scan_configurations(runs)
    if count > 1:
        if k_override or variant or paper_compatible:
            raise BayesiclError("--set-k, --variant and --paper-compatible are for one configuration; this folder "
                                f"holds {count} configurations ({', '.join(varying)} vary)")
        return run_population_fit(runs, out, count, varying, pool, covariates, method, strategies, holdout,
                                  prior_override, cutoff, seed, num_chains, num_samples, num_warmup, effects,
                                  echo=echo, warn=warn, note=note)
    if pool in ("partial", "full"):
        raise BayesiclError(f"--pool {pool}: {runs} holds one configuration; pooling needs several")
    note(f"[1/4] evidence: strategies on the runs' inputs, their losses L̄ and complexities K ({runs})")
    evidence = build_evidence(runs, strategies=tuple(strategies) if strategies else None, cutoff=cutoff,
                              progress=True, complexity_convention="paper" if paper_compatible else "bayesicl")
    sampler = f", then NUTS {num_chains} chains × {num_samples} draws" if method == "nuts" else ""
    note(f"[2/4] fit: MAP{sampler}, predictions and metrics on {evidence.num_conditions} conditions")
    result = fit(evidence, method=method, holdout=holdout, variant=variant, priors=prior_override,
                 complexity_override=k_override, seed=seed, num_chains=num_chains,
                 num_samples=num_samples, num_warmup=num_warmup, progress=method == "nuts", effects=effects)
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
    run_fit_command(args.runs, args.out, method=args.method, strategies=args.strategies,
                    holdout=args.holdout, k_override=parse_complexity_overrides(args.set_k),
                    prior_override=parse_prior_overrides(args.prior), all_steps=args.all_steps,
                    seed=args.seed, cutoff_step=args.cutoff_step, variant=args.variant,
                    num_chains=args.chains, num_samples=args.draws, num_warmup=args.warmup,
                    effects=getattr(args, "effects", None),
                    paper_compatible=bool(getattr(args, "paper_compatible", False)),
                    pool=getattr(args, "pool", None),
                    covariates=parse_covariates(getattr(args, "covariates", None)))
    return 0
