"""The top-level API and command line contracts of the README (Command line, Python API)."""

import subprocess
import sys

import pytest

import bayesicl as bic
from bayesicl import cli


def test_importing_bayesicl_and_fitting_code_never_imports_torch():
    code = ("import sys, bayesicl as bic; bic.fit; bic.evidence; bic.runs; bic.plot; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bic_fit_is_the_fit_function_itself_with_its_signature_and_docstring():
    import inspect

    from bayesicl.inference import cross_validate, fit, fit_population, load_fit
    from bayesicl.inference.pipeline import fit as pipeline_fit

    assert bic.fit is fit is pipeline_fit
    assert (bic.load_fit, bic.fit_population, bic.cross_validate) == (load_fit, fit_population, cross_validate)
    parameters = inspect.signature(bic.fit).parameters
    assert "method" in parameters and "args" not in parameters
    assert bic.fit.__doc__.startswith("Fit (α, β, γ) of the rational strategy model")


def test_cli_version_and_every_verbs_help_print_and_exit_zero(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert bic.__version__ in capsys.readouterr().out
    for verb in ("demo", "train", "sweep", "fit", "plot", "check"):
        with pytest.raises(SystemExit) as stop:                  # --help exits, never returns
            cli.main([verb, "--help"])
        assert stop.value.code == 0, verb
        assert capsys.readouterr().out.startswith(f"usage: bayesicl {verb} "), verb


def test_cli_fit_on_an_empty_folder_fails_with_one_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    code = cli.main(["fit", str(tmp_path / "runs"), "--out", str(tmp_path / "fit"), "--method", "map"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("bayesicl fit: error:") and "\n" not in err
    assert not (tmp_path / "fit").exists()


def test_cli_unknown_demo_task_and_missing_fit_folder_fail_cleanly(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nope" in err
