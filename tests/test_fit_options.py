"""`FitOptions`: one validated set of fit options shared by `bayesicl.fit`, the command line
and the fit folder."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import bayesicl as bic
from bayesicl.cli import build_parser
from bayesicl.commands.fit import fit_options as cli_fit_options
from bayesicl.errors import BayesiclError
from bayesicl.inference import FitOptions, load_fit
from bayesicl.inference.synthetic import synthetic_evidence


@pytest.fixture(scope="module")
def evidence():
    task = bic.task("urns", num_dims=4, context_length=8)
    return synthetic_evidence(task, [2, 4, 8], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
                              num_sequences=8, loss_sequences=64)


def test_the_signature_of_fit_lists_every_option_with_its_default():
    parameters = inspect.signature(bic.fit).parameters
    for field in dataclasses.fields(FitOptions):
        assert parameters[field.name].default == field.default
        assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("bad, message", [
    ({"method": "mcmc"}, "unknown fit method"), ({"holdout": 1.0}, "holdout"), ({"variant": "delta0"}, "variant"),
    ({"num_chains": 0}, "num_chains"), ({"num_warmup": -1}, "num_warmup"), ({"seed": 1.5}, "seed"),
    ({"effects": "runs"}, "effects"), ({"cutoff": "late"}, "cutoff"), ({"chain_method": "parallel"}, "chain_method"),
    ({"strategies": "memorizing"}, "strategies"), ({"priors": ["alpha"]}, "priors"), ({"colour": 1}, "colour")])
def test_a_bad_option_is_refused_in_one_line_naming_it(bad, message):
    with pytest.raises(BayesiclError, match=message):
        FitOptions().replace(**bad)


def test_options_survive_their_json_form():
    options = FitOptions(method="map", variant=None, priors={"alpha": "Beta(2, 3)", "beta": ("LogNormal", (0, 1))},
                         complexity_override={("memorizing", 64): 12.5, "generalizing": 3.0}, strategies=["memorizing", "generalizing"],
                         cutoff=300, num_chains=2)
    assert options.variant == "full" and options.strategies == ("memorizing", "generalizing")
    assert FitOptions.from_dict(options.to_dict()) == options


def test_keywords_and_an_options_object_give_the_same_fit_and_the_folder_records_them(evidence, tmp_path):
    by_keywords = bic.fit(evidence, method="map", holdout=0.0, random_starts=1, seed=3)
    options = FitOptions(method="map", holdout=0.0, random_starts=1)
    by_object = bic.fit(evidence, options, seed=3)
    assert by_keywords.params == by_object.params
    assert by_object.options == options.replace(seed=3)
    loaded = load_fit(by_object.save(tmp_path / "fit"))
    assert loaded.options == options.replace(seed=3)
    with pytest.raises(BayesiclError, match="FitOptions"):
        bic.fit(evidence, {"method": "map"})


def test_a_folder_written_before_the_options_were_recorded_gives_those_its_info_holds(evidence):
    result = bic.fit(evidence, method="map", holdout=0.0, random_starts=1, seed=2,
                     complexity_override={"generalizing": 40.0})
    del result.info["options"]
    options = result.options
    assert (options.method, options.seed, options.holdout, options.variant) == ("map", 2, 0.0, "full")
    assert options.complexity_override == {"generalizing": 40.0}


def test_the_command_line_flags_become_one_options_object():
    args = build_parser().parse_args(["fit", "runs", "--method", "map", "--set-k", "memorizing:64=12", "--chains", "2",
                                      "--draws", "50", "--warmup", "20", "--prior", "alpha=Beta(2,2)",
                                      "--cutoff-step", "300", "--variant", "beta1", "--seed", "4"])
    assert cli_fit_options(args) == FitOptions(
        method="map", complexity_override={("memorizing", 64): 12.0}, num_chains=2, num_samples=50, num_warmup=20,
        priors={"alpha": "Beta(2,2)"}, cutoff=300, variant="beta1", seed=4, paper_compatible=False)
    args = build_parser().parse_args(["fit", "runs", "--all-steps"])
    assert cli_fit_options(args).cutoff == "all"
