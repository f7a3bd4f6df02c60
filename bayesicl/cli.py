"""The `bayesicl` command line (README.md#command-line): demo, train, sweep, fit, predict, cross-validate,
plot, report, check.

Every verb exits 0 on success and 1 on a usage or data error, printing one line on stderr
(the traceback only with --debug). The verbs that compose stages (fit + plot + report) live
in `bayesicl.commands`; the fit, plot, report and demo verbs import them when they run, so
that building the parser (every call, `--help` included) does not load NumPyro, ArviZ and
matplotlib; `train` and `sweep` import torch only when they run
(`bayesicl.transformers.cli`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from ._version import __version__
from .errors import BayesiclError, BayesiclWarning
from .families import FAMILIES
from .runs.check import check_main
from .transformers.cli import add_sweep_arguments, add_train_arguments, sweep_main, train_main


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo_main

    return demo_main(args)


def _fit(args: argparse.Namespace) -> int:
    from .commands.fit import fit_main

    return fit_main(args)


def _predict(args: argparse.Namespace) -> int:
    from .commands.population import predict_main

    return predict_main(args)


def _cross_validate(args: argparse.Namespace) -> int:
    from .commands.population import cross_validate_main

    return cross_validate_main(args)


def _plot(args: argparse.Namespace) -> int:
    from .plot.command import plot_main

    return plot_main(args)


def _report(args: argparse.Namespace) -> int:
    from .report.command import report_main

    return report_main(args)


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["map", "nuts"], default="nuts",
                        help="map: the paper's objective, a point estimate; nuts: the posterior (default: nuts)")
    parser.add_argument("--strategies", nargs="+", default=None,
                        metavar="KIND", help="strategy kinds, M first (default: memorizing generalizing; "
                             "markov: M2 G2 M1 G1)")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of the largest diversities and last checkpoints held out "
                             "(default: %(default)s)")
    parser.add_argument("--all-steps", action="store_true",
                        help="model every checkpoint instead of those after the paper's cutoff N_0")
    parser.add_argument("--cutoff-step", type=int, default=None,
                        help="override the cutoff N_0 (default: the paper's rule)")
    parser.add_argument("--set-k", action="append", default=[], metavar="KIND:D=BITS",
                        help="override a complexity, e.g. memorizing:64=1234.5 (repeatable; default: none)")
    parser.add_argument("--prior", action="append", default=[], metavar="NAME=DIST(ARGS)",
                        help="override a prior, e.g. alpha=Beta(2,2) (repeatable; default: the family's priors)")
    parser.add_argument("--variant", default=None,
                        choices=["alpha0", "beta1", "gamma1", "constant_complexity"],
                        help="fit an ablation of the strategy model (default: the full model)")
    parser.add_argument("--effects", default=None, choices=["none", "run", "run+trend"],
                        help="run-level effects of the NUTS model: per-run log-odds offsets (run) and a "
                             "within-run AR(1) deviation (trend) (default: run+trend with two strategies, "
                             "run with more)")
    parser.add_argument("--pool", default=None, choices=["none", "full", "partial"],
                        help="with several configurations in RUNS (runs differing in more than diversity and "
                             "seed): none fits each alone, full shares one (alpha, beta, gamma), partial pools "
                             "them hierarchically (default: partial with several configurations)")
    parser.add_argument("--covariates", default=None, metavar="A,B",
                        help="settings whose log enters the population model, e.g. mlp_width,context_length "
                             "(default: every numeric setting that varies)")
    _add_convention_argument(parser)
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="NUTS warm-up steps per chain (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the MAP starts, the sampler and the baselines (default: %(default)s)")


def _add_convention_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paper-compatible", action="store_true",
                        help="measure K in the paper's convention (its compressors, dtypes and K_code) instead "
                             "of bayesicl's; alpha, beta, gamma are comparable only under one convention")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    shipped = [name for name, spec in FAMILIES.items() if spec.versioned] + ["urns-grid"]
    demo.add_argument("--task", default="urns", choices=shipped,
                      help="which shipped runs to fit; urns-grid: the configuration grid, fitted with partial "
                           "pooling (default: %(default)s)")
    demo.add_argument("--out", default=None, help="output folder (default: demo-out/TASK)")
    demo.add_argument("--method", choices=["map", "nuts"], default="nuts",
                      help="map: the paper's objective, a point estimate; nuts: the posterior (default: nuts)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the fit (default: %(default)s)")
    demo.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    _add_convention_argument(demo)

    train = verb("train", train_main, "train one reference transformer per diversity and log its run")
    sweep = verb("sweep", sweep_main, "train a grid of runs (diversities × widths × lengths × seeds)")
    add_train_arguments(train)
    add_sweep_arguments(sweep)

    fit = verb("fit", _fit, "fit (alpha, beta, gamma) to logged runs and write the report")
    fit.add_argument("runs", help="a run folder or a folder of runs")
    fit.add_argument("--out", default=None, help="output folder for the fit (default: RUNS-fit beside RUNS)")
    _add_fit_arguments(fit)

    predict = verb("predict", _predict, "predict the phase diagram and N*(D) of a configuration nobody trained, "
                   "from a fit of several configurations")
    predict.add_argument("fit", help="a folder written by `bayesicl fit RUNS/` over several configurations")
    predict.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", required=True,
                         help="a setting of the new configuration, e.g. mlp_width=512 (required, repeatable; "
                              "settings not given are those of the nearest fitted configuration)")
    predict.add_argument("--diversity", type=int, nargs="+", required=True, metavar="D",
                         help="diversities to predict, e.g. 4 16 64 256 (required)")
    predict.add_argument("--step", type=float, nargs="+", default=[100, 300, 1000, 3000, 10000, 30000, 100000],
                         metavar="N", help="steps to predict (default: %(default)s)")
    predict.add_argument("--out", default=None, help="output folder (default: FIT-predicted beside FIT)")
    predict.add_argument("--seed", type=int, default=0, help="seed of the population draws (default: %(default)s)")

    cv = verb("cross-validate", _cross_validate, "leave-one-configuration-out validation of partial, no and "
              "full pooling; writes a table")
    cv.add_argument("runs", help="a folder of runs with at least 3 configurations")
    cv.add_argument("--by", default="config", choices=["config"], help="what to hold out (default: %(default)s)")
    cv.add_argument("--pools", nargs="+", default=["partial", "none", "full"], choices=["partial", "none", "full"],
                    help="pooling choices to compare (default: partial none full)")
    cv.add_argument("--covariates", default=None, metavar="A,B",
                    help="settings of the covariates (default: every numeric setting that varies)")
    cv.add_argument("--effects", default=None, choices=["none", "run", "run+trend"],
                    help="run-level effects (default: run+trend with two strategies)")
    cv.add_argument("--out", default=None, help="output folder (default: RUNS-cv beside RUNS)")
    cv.add_argument("--chains", type=int, default=4, help="NUTS chains (default: %(default)s)")
    cv.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default: %(default)s)")
    cv.add_argument("--warmup", type=int, default=1000, help="NUTS warm-up steps per chain (default: %(default)s)")
    cv.add_argument("--seed", type=int, default=0, help="seed of the fits and draws (default: %(default)s)")

    plot = verb("plot", _plot, "draw the figures of a fit folder")
    plot.add_argument("fit", help="a folder written by `bayesicl fit` or `bayesicl demo`")
    plot.add_argument("--out", default=None, help="output folder (default: the fit folder)")
    plot.add_argument("--pdf", action="store_true", help="also write PDF files")

    check = verb("check", check_main, "validate a folder of logged runs and say what is wrong")
    check.add_argument("runs", help="a run folder or a folder of runs")

    report = verb("report", _report, "write the report page (one self-contained HTML file) of a fit folder")
    report.add_argument("fit", help="a folder written by `bayesicl fit` or `bayesicl demo`")
    report.add_argument("--out", default=None, help="the HTML file to write (default: FIT/report.html)")
    return parser


class UsageError(Exception):
    """A command line argparse rejects (raised instead of argparse's usage block + exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 1, like every other bad input
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb. Every failure is one line on stderr and exit 1: the message of an
    expected failure (bad input, a file problem, a missing extra), or for a bug the
    exception and "run with --debug for the traceback". --debug re-raises instead."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(_one_line(str(error)), file=sys.stderr)
        return 1
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 1
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.verb)
        try:
            return int(args.handler(args) or 0)
        except KeyboardInterrupt:
            print(f"bayesicl {args.verb}: interrupted", file=sys.stderr)
            return 1
        except Exception as error:
            if getattr(args, "debug", False):
                raise
            print(f"bayesicl {args.verb}: error: {describe_error(error)}", file=sys.stderr)
            return 1


def describe_error(error: BaseException) -> str:
    """One line for a failure: the message of a `BayesiclError`; file and reason of an
    OSError (a full disk, a read-only file system); the missing package of an ImportError;
    otherwise the exception, marked unexpected, with the hint to rerun with --debug.

    >>> describe_error(OSError(28, "No space left on device", "runs/x.nc"))
    'runs/x.nc: No space left on device'
    >>> describe_error(KeyError("alpha"))
    "unexpected KeyError: 'alpha' (run with --debug for the traceback)"
    """
    if isinstance(error, BayesiclError):
        return _one_line(str(error)) or "BayesiclError"
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else ""
        return _one_line(f"{where}: {error.strerror}" if where != "" else error.strerror)
    if isinstance(error, ImportError):
        hint = ""
        if (error.name or "").split(".")[0] in {"torch", "safetensors", "ray"}:
            hint = " (install the extra: pip install 'bayesicl[train]' or 'bayesicl[ray]')"
        return _one_line(f"{error}{hint}")
    return _one_line(f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)")


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _warning_printer(verb: str):
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BayesiclWarning):
            line = f"bayesicl {verb}: warning: {_one_line(str(message))}"
            if "tqdm" in sys.modules:    # a progress bar may be on screen: print above it
                sys.modules["tqdm"].tqdm.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


if __name__ == "__main__":
    sys.exit(main())
