"""The `bayesicl` command line (SPEC §14): demo, train, sweep, fit, plot, check.

Every verb exits 0 on success and 1 on a usage or data error, printing one line on stderr
(the traceback only with --debug). Verbs import their stage lazily so that `bayesicl fit`
never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ._version import __version__
from .errors import BayesiclError


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo_main

    return demo_main(args)


def _train(args: argparse.Namespace) -> int:
    from .transformers.cli import train_main

    return train_main(args)


def _sweep(args: argparse.Namespace) -> int:
    from .transformers.cli import sweep_main

    return sweep_main(args)


def _fit(args: argparse.Namespace) -> int:
    from .fit.command import fit_main

    return fit_main(args)


def _plot(args: argparse.Namespace) -> int:
    from .plot.command import plot_main

    return plot_main(args)


def _check(args: argparse.Namespace) -> int:
    from .runs.check import check_main

    return check_main(args)


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["map", "nuts"], default="nuts",
                        help="MAP (the paper's objective) or NUTS posterior (default)")
    parser.add_argument("--strategies", nargs="+", default=["memorizing", "generalizing"],
                        metavar="KIND", help="strategy kinds, M first (default: memorizing generalizing)")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of the largest diversities and last checkpoints held out")
    parser.add_argument("--all-steps", action="store_true",
                        help="model every checkpoint instead of those after the paper's cutoff N_0")
    parser.add_argument("--cutoff-step", type=int, default=None, help="override the cutoff N_0")
    parser.add_argument("--set-k", action="append", default=[], metavar="KIND:D=BITS",
                        help="override a complexity, e.g. memorizing:64=1234.5 (repeatable)")
    parser.add_argument("--prior", action="append", default=[], metavar="NAME=DIST(ARGS)",
                        help="override a prior, e.g. alpha=Beta(2,2) (repeatable)")
    parser.add_argument("--variant", default=None,
                        choices=["alpha0", "beta1", "gamma1", "constant_complexity"],
                        help="fit an ablation of the strategy model")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesicl",
        description="Predict when a transformer memorizes or generalizes in context, "
                    "from a rational Bayesian account (Wurgaft et al., 2025).")
    parser.add_argument("--version", action="version", version=f"bayesicl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_, description=help_)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks on errors")
        sub.set_defaults(handler=handler)
        return sub

    demo = verb("demo", _demo, "fit the rational model to the runs shipped in data/ and write the report")
    demo.add_argument("--task", default="urns", choices=["urns", "regression", "classification"])
    demo.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--method", choices=["map", "nuts"], default="nuts")
    demo.add_argument("--seed", type=int, default=0)

    train = verb("train", _train, "train one reference transformer per diversity and log its run")
    sweep = verb("sweep", _sweep, "train a grid of runs (diversities × widths × lengths × seeds)")
    try:
        from .transformers.cli import add_sweep_arguments, add_train_arguments
    except ImportError:  # torch missing: the verbs say so when run
        train.add_argument("rest", nargs=argparse.REMAINDER)
        sweep.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_train_arguments(train)
        add_sweep_arguments(sweep)

    fit = verb("fit", _fit, "fit (alpha, beta, gamma) to logged runs and write the report")
    fit.add_argument("runs", help="a run folder or a folder of runs")
    fit.add_argument("--out", required=True, help="output folder for the fit")
    _add_fit_arguments(fit)

    plot = verb("plot", _plot, "draw the figures of a fit folder")
    plot.add_argument("fit", help="a folder written by `bayesicl fit` or `bayesicl demo`")
    plot.add_argument("--out", default=None, help="output folder (default: the fit folder)")
    plot.add_argument("--pdf", action="store_true", help="also write PDF files")

    check = verb("check", _check, "validate a folder of logged runs and say what is wrong")
    check.add_argument("runs", help="a run folder or a folder of runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except (BayesiclError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"bayesicl {args.verb}: error: {message}", file=sys.stderr)
        return 1
    except ImportError as error:
        if args.debug:
            raise
        hint = ""
        if (error.name or "").split(".")[0] in {"torch", "safetensors", "ray"}:
            hint = " (install the extra: pip install 'bayesicl[train]' or 'bayesicl[ray]')"
        print(f"bayesicl {args.verb}: error: {error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bayesicl {args.verb}: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
