"""Fits across configurations (docs/model.md#population-model): grouping, the three poolings,
predicting an untrained configuration, leave-one-configuration-out, files and the CLI.

Sizes are tiny (urns d = 4, T = 8, 3–4 configurations, 3 diversities × 4 steps, 2 chains)
so that the module runs in about a minute and a half on one core; benchmarks/population.py
measures recovery at full size.
"""

import dataclasses
import math
import warnings

import numpy as np
import pytest

import bayesicl as bic
from bayesicl.cli import main
from bayesicl.errors import BayesiclError, BayesiclWarning
from bayesicl.inference import fit, load_fit
from bayesicl.inference.population import PopulationResult, fit_population
from bayesicl.commands.population import scan_configurations
from bayesicl.inference.population_cv import COLUMNS, cross_validate
from bayesicl.inference.population_data import configurations
from bayesicl.inference.synthetic import synthetic_evidence, synthetic_population

TASK = bic.task("urns", num_dims=4, context_length=8)
DIVERSITIES = [4, 8, 16]
STEPS = [100, 300, 1000, 3000]
SAMPLER = dict(num_chains=2, num_samples=150, num_warmup=150)


@pytest.fixture(scope="module")
def population():
    """Three MLP widths drawn from a known population with run offsets (sd 0.3) and noise."""
    return synthetic_population(TASK, {"mlp_width": [16, 32, 64]}, DIVERSITIES, STEPS, num_sequences=4,
                                loss_sequences=32, run_sd=0.3, noise_sd=0.2, seed=3)


@pytest.fixture(scope="module")
def partial(population):
    return fit_population(population.evidence, pool="partial", ood_stage=False, **SAMPLER)


def test_configurations_are_named_by_the_settings_that_vary(population):
    configs = configurations(population.evidence)
    assert [c.name for c in configs] == ["mlp_width=16", "mlp_width=32", "mlp_width=64"]
    assert [c.covariates for c in configs] == [{"mlp_width": 16.0}, {"mlp_width": 32.0}, {"mlp_width": 64.0}]
    assert configs[0].settings["context_length"] == 8 and configs[0].settings["task"] == "urns"


def test_runs_of_one_configuration_form_one_named_by_the_family():
    configs = configurations("data/runs/urns")
    assert len(configs) == 1 and configs[0].name == "urns" and configs[0].covariates == {}
    assert len(configs[0].runs) >= 9
    assert scan_configurations("data/runs/urns") == (1, [])


def test_configurations_of_two_families_are_refused_in_one_line(population):
    regression = bic.task("regression", num_dims=2, context_length=4)
    other = synthetic_evidence(regression, [2, 4], [10, 100], params=(0.6, 0.3, 0.01), num_sequences=4,
                               loss_sequences=16)
    with pytest.raises(BayesiclError, match="several task families") as error:
        configurations([population.evidence[0], other])
    assert "\n" not in str(error.value)


def test_partial_pooling_reports_population_configurations_and_conditions(partial):
    assert isinstance(partial, PopulationResult) and partial.pool == "partial"
    table = partial.configurations
    assert table["configuration"].tolist() == ["mlp_width=16", "mlp_width=32", "mlp_width=64"]
    for name in ("alpha", "beta", "gamma"):
        assert (table[f"{name}_low"] <= table[name]).all() and (table[name] <= table[f"{name}_high"]).all()
    assert set(partial.population) >= {"mu", "B", "tau"}
    assert set(partial.population["B"]["log_beta"]) == {"mlp_width"}
    assert partial.conditions.columns[0] == "configuration"
    assert set(partial.conditions["configuration"]) == set(table["configuration"])
    assert {"predicted_weight", "observed_low", "observed_high", "subset", "split"} <= set(partial.conditions.columns)
    assert list(partial.transitions.columns[:5]) == ["configuration", "diversity", "transition_step", "low", "high"]
    assert partial.idata.posterior["alpha"].dims == ("chain", "draw", "configuration")
    assert partial.report["diagnostics"]["r_hat_max"] is not None
    assert partial.report["identified"] == {n: partial.fits[n].report["identified"] for n in partial.names}
    assert 1 <= partial.report["diagnostics"]["steps_mean"] <= 1023
    assert 0 <= partial.report["diagnostics"]["max_depth_share"] <= 1


def test_each_configuration_has_its_own_noise_scales_pooled_across_configurations():
    """σ_obs and σ_logit are per configuration, log-normal around a typical scale: a
    configuration whose runs scatter more gets the larger σ_logit (docs/model.md#population-model)."""
    kwargs = dict(num_sequences=4, loss_sequences=32, run_sd=0.2, seed=3)
    quiet = synthetic_population(TASK, {"mlp_width": [16]}, [4, 8, 16, 32], STEPS, noise_sd=0.05, **kwargs)
    noisy = synthetic_population(TASK, {"mlp_width": [64]}, [4, 8, 16, 32], STEPS, noise_sd=0.8, **kwargs)
    result = fit_population(quiet.evidence + noisy.evidence, pool="partial", ood_stage=False, **SAMPLER)
    scale = result.idata.posterior["config_sigma_logit"]
    assert scale.dims == ("chain", "draw", "configuration")
    low, high = scale.mean(("chain", "draw")).values
    assert high > 2 * low, (low, high)
    assert {"sigma_logit_spread", "sigma_obs_spread"} <= set(result.state["noise_draws"])


def test_full_pooling_gives_every_configuration_one_shared_theta(population):
    result = fit_population(population.evidence, pool="full", ood_stage=False, **SAMPLER)
    alpha = result.idata.posterior["alpha"].values
    assert np.array_equal(alpha[..., 0], alpha[..., 1]) and np.array_equal(alpha[..., 0], alpha[..., 2])
    assert result.configurations["beta"].nunique() == 1 and result.population is None


def test_no_pooling_is_the_single_fit_of_each_configuration(population):
    result = fit_population(population.evidence, pool="none", method="map", random_starts=1)
    for name, evidence in zip(result.names, population.evidence):
        alone = fit(evidence, method="map", random_starts=1)
        assert result.fits[name].params == alone.params
    assert result.configurations["alpha"].tolist() == [result.fits[n].params["alpha"] for n in result.names]


def test_one_configuration_takes_the_single_fit_path_unchanged(population):
    result = fit_population(population.evidence[:1], method="map", random_starts=1)
    assert result.pool == "none"
    assert result.fits["urns"].params == fit(population.evidence[0], method="map", random_starts=1).params
    with pytest.raises(BayesiclError, match="at least 2 configurations"):
        fit_population(population.evidence[:1], pool="partial")


def test_a_saved_population_fit_loads_back_and_predicts_the_same(partial, tmp_path):
    partial.save(tmp_path / "fit")
    loaded = load_fit(tmp_path / "fit")
    assert isinstance(loaded, PopulationResult) and loaded.pool == "partial"
    assert loaded.configurations["configuration"].tolist() == partial.names
    np.testing.assert_allclose(loaded.configurations["alpha"], partial.configurations["alpha"])
    assert len(loaded.conditions) == len(partial.conditions)
    a = partial.predict([4, 16], [300, 3000], {"mlp_width": 24}, seed=1)
    b = loaded.predict([4, 16], [300, 3000], {"mlp_width": 24}, seed=1)
    np.testing.assert_allclose(a.conditions["predicted_weight"], b.conditions["predicted_weight"])


def test_predict_an_untrained_width_gives_intervals_and_refuses_far_extrapolation(partial):
    prediction = partial.predict([4, 8, 16], [100, 1000, 10000], {"mlp_width": 24})
    rows = prediction.conditions
    assert len(rows) == 9 and (rows["weight_low"] <= rows["predicted_weight"]).all()
    assert (rows["predicted_weight"] <= rows["weight_high"]).all()
    assert prediction.transitions["diversity"].tolist() == [4, 8, 16]
    assert (prediction.transitions["low"] <= prediction.transitions["high"]).all()
    with pytest.warns(BayesiclWarning, match="outside the trained range"):
        partial.predict([4], [1000], {"mlp_width": 100})
    with pytest.raises(BayesiclError, match="more than a factor 2") as error:
        partial.predict([4], [1000], {"mlp_width": 200})
    assert "\n" not in str(error.value)
    with pytest.raises(BayesiclError, match="unknown setting"):
        partial.predict([4], [1000], {"mlp_depth": 2})
    with pytest.raises(BayesiclError, match="knows nothing of its effect"):
        partial.predict([4], [1000], {"num_dims": 5})


def test_a_new_context_length_changes_the_task_terms(population):
    grid = synthetic_population(TASK, {"context_length": [8, 16], "mlp_width": [16, 32]}, [4, 8], [100, 300, 1000],
                                num_sequences=4, loss_sequences=32, seed=3)
    result = fit_population(grid.evidence, pool="none", method="map", random_starts=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesiclWarning)
        short = result.predict([8], [1000], {"context_length": 8, "mlp_width": 16})
        longer = result.predict([8], [1000], {"context_length": 12, "mlp_width": 16})
    assert short.settings["context_length"] == 8 and longer.settings["context_length"] == 12
    assert "nearest fitted configuration" in short.source
    assert short.conditions["predicted_weight"].iloc[0] != longer.conditions["predicted_weight"].iloc[0]


def test_cross_validation_scores_each_held_out_configuration(population):
    partial_tables = []
    table = cross_validate(population.evidence, pools=("partial", "none"), num_chains=1, num_samples=60,
                           num_warmup=60, holdout=0.0, on_row=partial_tables.append)
    assert list(table.columns) == COLUMNS
    assert [len(t) for t in partial_tables] == [1, 2, 3, 4, 5, 6] and partial_tables[-1].equals(table)
    assert table["held_out"].tolist() == ["mlp_width=16"] * 2 + ["mlp_width=32"] * 2 + ["mlp_width=64"] * 2
    none = table[table["pool"] == "none"]
    assert none["scored_with"].str.startswith("nearest configuration").all()
    assert ((table["coverage_id"] >= 0) & (table["coverage_id"] <= 1)).all()
    assert np.isfinite(table["elpd_id"]).all() and np.isfinite(table["correlation_id"]).all()
    assert table.loc[table["held_out"] == "mlp_width=64", "extrapolates"].tolist() == [True, False]


def test_population_recovery_covers_the_truth_reduced(population):
    """A reduced synthetic-recovery check (benchmarks/population.py runs the full one): a
    fourth width is held out; its true N*(D) lies in the predicted 90% interval, and the
    90% intervals of μ, B, τ cover the truth in most checks."""
    grid = synthetic_population(TASK, {"mlp_width": [16, 24, 32, 48, 64]}, DIVERSITIES, STEPS, num_sequences=4,
                                loss_sequences=32, run_sd=0.3, noise_sd=0.2, seed=5)
    train = [e for j, e in enumerate(grid.evidence) if j != 2]
    result = fit_population(train, pool="partial", ood_stage=False, **SAMPLER)
    truth = grid.truth(result.state["covariates"])
    covered = []
    for key in ("mu", "tau"):
        for k, name in enumerate(result.population["parameters"]):
            entry = result.population[key][name]
            covered.append(entry["low"] <= truth[key][k] <= entry["high"])
    for k, name in enumerate(result.population["parameters"]):
        entry = result.population["B"][name]["mlp_width"]
        covered.append(entry["low"] <= truth["B"][k, 0] <= entry["high"])
    assert sum(covered) >= 7, covered
    prediction = result.predict(DIVERSITIES, [1000], {"mlp_width": 32})
    alpha, beta, gamma = grid.params[2]
    loss, bits = grid.evidence[2].loss, grid.evidence[2].complexity
    inside = []
    for row in prediction.transitions.to_dict(orient="records"):
        d = row["diversity"]
        true = float(bic.rational.transition_step(alpha, beta, gamma, loss.loc[d].iloc[0], loss.loc[d].iloc[1],
                                                  bits.loc[d].iloc[0], bits.loc[d].iloc[1]))
        inside.append(row["low"] <= true <= row["high"] or (math.isinf(true) and math.isinf(row["high"])))
    assert sum(inside) >= 2, (inside, prediction.transitions)


def test_cli_refuses_pooling_a_single_configuration_in_one_line(tmp_path, capsys):
    assert main(["fit", "data/runs/urns", "--pool", "partial", "--out", str(tmp_path / "fit")]) == 1
    err = capsys.readouterr().err.strip()
    assert "holds one configuration" in err and "\n" not in err


def test_cli_cross_validate_needs_three_configurations(tmp_path, capsys):
    assert main(["cross-validate", "data/runs/urns", "--out", str(tmp_path / "cv")]) == 1
    err = capsys.readouterr().err.strip()
    assert "at least 3 configurations" in err and "\n" not in err


def test_cli_predict_writes_tables_and_refuses_far_settings(partial, tmp_path, capsys):
    partial.save(tmp_path / "fit")
    assert main(["predict", str(tmp_path / "fit"), "--set", "mlp_width=40", "--diversity", "4", "16",
                 "--step", "300", "3000", "--out", str(tmp_path / "pred")]) == 0
    out = capsys.readouterr().out
    assert "D=4: N*" in out and (tmp_path / "pred" / "predicted_conditions.csv").is_file()
    assert (tmp_path / "pred" / "prediction.json").is_file()
    assert main(["predict", str(tmp_path / "fit"), "--set", "mlp_width=4096", "--diversity", "4",
                 "--out", str(tmp_path / "pred2")]) == 1
    err = capsys.readouterr().err.strip()
    assert "more than a factor 2" in err and "\n" not in err


def test_population_evidence_settings_are_kept(population):
    assert [e.settings["config"] for e in population.evidence] == [{"mlp_width": w} for w in (16, 32, 64)]
    assert dataclasses.is_dataclass(population.evidence[0])
