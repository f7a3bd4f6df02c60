"""`bayesicl fit RUNS --out FIT`: build the evidence, fit, write the report and phase diagram.

Warnings of the fit-quality guards are printed to stderr, each on its own line starting with
"WARNING:", after the headline numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import BayesiclError


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
        out[name.strip()] = spec.strip()
    return out


def run_fit_command(runs, out, method: str = "nuts", strategies=("memorizing", "generalizing"),
                    holdout: float = 0.2, k_override: dict | None = None, prior_override: dict | None = None,
                    all_steps: bool = False, seed: int = 0, cutoff_step: int | None = None,
                    variant: str | None = None, num_chains: int = 4, num_samples: int = 1000,
                    num_warmup: int = 1000, echo=print, warn=None):
    """Build evidence from `runs`, fit, save into `out` with phase_diagram.png; return the fit."""
    from ..evidence import build_evidence
    from .pipeline import fit

    warn = warn or (lambda line: print(line, file=sys.stderr))
    cutoff = "all" if all_steps else ("paper" if cutoff_step is None else int(cutoff_step))
    evidence = build_evidence(runs, strategies=tuple(strategies), cutoff=cutoff, progress=True)
    result = fit(evidence, method=method, holdout=holdout, variant=variant, priors=prior_override,
                 complexity_override=k_override, seed=seed, num_chains=num_chains,
                 num_samples=num_samples, num_warmup=num_warmup, progress=method == "nuts")
    folder = result.save(out)
    _phase_diagram(result, folder)
    from ..demo import format_report

    echo(format_report(result))
    for line in result.guards:
        warn(f"WARNING: {line}")
    echo(f"wrote {folder}")
    return result


def _phase_diagram(result, folder: Path) -> None:
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path
    from ..plot import phase_diagram

    figure = phase_diagram(result)
    with atomic_path(folder / "phase_diagram.png") as tmp:
        figure.savefig(tmp, dpi=130, format="png")
    plt.close(figure)


def fit_main(args: argparse.Namespace) -> int:
    """The `bayesicl fit` verb (arguments as built by `bayesicl.cli`)."""
    run_fit_command(args.runs, args.out, method=args.method, strategies=args.strategies,
                    holdout=args.holdout, k_override=parse_complexity_overrides(args.set_k),
                    prior_override=parse_prior_overrides(args.prior), all_steps=args.all_steps,
                    seed=args.seed, cutoff_step=args.cutoff_step, variant=args.variant,
                    num_chains=args.chains, num_samples=args.draws, num_warmup=args.warmup)
    return 0
