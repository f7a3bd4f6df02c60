"""Fit results (docs/model.md#fit-outputs): summary.json keys, conditions.csv, save/load round trip, guards, CLI."""

from __future__ import annotations

import json
import math

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesicl as bic
from bayesicl.cli import main as cli_main
from bayesicl.errors import BayesiclError
from bayesicl.inference import fit, load_fit
from bayesicl.inference import guards
from bayesicl.commands.fit import parse_complexity_overrides, parse_prior_overrides
from bayesicl.inference.synthetic import mixture_output, strategy_outputs, synthetic_evidence, synthetic_terms
from fit_reference import MG, log_odds

DIVERSITIES = (2, 4, 8, 16)
STEPS = (10, 30, 100, 300, 1000, 3000, 10000)
TRUTH = (0.6, 0.2, 0.85)

REQUIRED_KEYS = ["task", "settings", "strategies", "method", "cutoff_step", "params", "diagnostics", "metrics",
                 "baselines", "n_conditions", "runtime_s"]


def weights_for(loss, complexity, diversity, step, params=TRUTH, noise=0.2, seed=0):
    z = log_odds(params, loss, complexity, diversity, np.asarray(step))
    z = z + noise * np.random.default_rng(seed).standard_normal(z.size)
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def evidence():
    task = bic.task("urns", num_dims=4, context_length=8)
    outputs = strategy_outputs(task, MG, DIVERSITIES, num_sequences=8, seed=0)
    terms = synthetic_terms(task, MG, outputs[1], loss_sequences=64)
    return synthetic_evidence(task, DIVERSITIES, STEPS, weights=weights_for, outputs=outputs, terms=terms)


@pytest.fixture(scope="module")
def map_fit(evidence):
    return fit(evidence, method="map", holdout=0.25, loss_sequences=64, random_starts=2)


@pytest.fixture(scope="module")
def nuts_fit(evidence):
    return fit(evidence, method="nuts", holdout=0.25, loss_sequences=64, random_starts=2,
               num_samples=300, num_warmup=300)


@pytest.mark.parametrize("which", ["map_fit", "nuts_fit"])
def test_summary_has_every_key_of_the_output_contract(which, request):
    result = request.getfixturevalue(which)
    summary = result.summary()
    for key in REQUIRED_KEYS + ["transition_steps", "guards"]:
        assert key in summary, key
    assert summary["task"] == "urns" and summary["method"] == which.split("_")[0]
    assert summary["strategies"] == list(MG)
    for name in ("alpha", "beta", "gamma"):
        assert set(summary["params"][name]) >= {"mean", "sd", "low", "high", "map"}
    assert summary["interval_level"] == 0.9
    assert isinstance(summary["identified"], bool) and "subset" in summary and "split" not in summary
    assert set(summary["diagnostics"]) >= {"r_hat_max", "ess_bulk_min", "divergences"}
    for subset in ("fit", "heldout", "all"):
        for split in ("id", "ood"):
            assert {"correlation", "tvd", "spearman"} <= set(summary["metrics"][subset][split])
    assert set(summary["n_conditions"]) == {"fit", "heldout"}
    assert summary["n_conditions"]["fit"] + summary["n_conditions"]["heldout"] == len(DIVERSITIES) * len(STEPS)
    if which == "map_fit":
        assert summary["params"]["alpha"]["sd"] is None and summary["diagnostics"]["r_hat_max"] is None
    else:
        assert summary["params"]["alpha"]["sd"] > 0 and summary["diagnostics"]["divergences"] is not None
    json.dumps(summary, allow_nan=False)


def test_conditions_table_has_one_row_per_condition_and_split(nuts_fit, evidence):
    table = nuts_fit.conditions
    assert len(table) == 2 * evidence.num_conditions
    for column in ("diversity", "step", "split", "subset", "in_fit", "observed_weight", "predicted_weight",
                   "expected_observed_weight", "weight_low", "weight_high", "observed_low", "observed_high",
                   "r", "interpolation_distance", "tvd", "spearman", "kl"):
        assert column in table.columns, column
    assert "predicted_low" not in table.columns
    assert set(table["split"]) == {"id", "ood"}
    assert set(table["subset"]) <= {"fit", "heldout", "unmodeled"}
    assert (table["observed_low"] <= table["observed_high"]).all()
    assert ((table["predicted_weight"] >= 0) & (table["predicted_weight"] <= 1)).all()
    # Observed weights are the evidence's, condition by condition.
    id_rows = table[table["split"] == "id"].sort_values("condition")
    np.testing.assert_allclose(id_rows["observed_weight"], evidence.sel(split="id")["observed_weight"])


@pytest.mark.parametrize("which", ["map_fit", "nuts_fit"])
def test_save_then_load_gives_back_the_same_fit(which, request, tmp_path):
    result = request.getfixturevalue(which)
    folder = result.save(tmp_path / "fit")
    names = {p.name for p in folder.iterdir()}
    assert {"summary.json", "conditions.csv", "strategy_loss.csv", "strategy_complexity.csv",
            "evidence_conditions.csv", "fit.json"} <= names
    assert ("posterior.nc" in names) == (which == "nuts_fit")
    loaded = load_fit(folder)
    assert loaded.summary() == json.loads(json.dumps(result.summary()))
    assert loaded.params == pytest.approx(result.params)
    pd.testing.assert_frame_equal(loaded.conditions.reset_index(drop=True),
                                  result.conditions.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(loaded.transition_steps(), result.transition_steps(), check_dtype=False)
    before = result.predict([4, 32], [50, 5000])
    after = loaded.predict([4, 32], [50, 5000])
    pd.testing.assert_frame_equal(after, before, check_dtype=False)
    if which == "nuts_fit":
        idata = az.from_netcdf(folder / "posterior.nc")
        assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(idata.groups())


def test_predict_at_an_unlogged_diversity_uses_the_strategies_terms(map_fit):
    task = map_fit.task
    pool = task.pool(32, seed=0)
    m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
    loss = [bic.strategies.loss(task, s, pool, num_sequences=64, seed=0) for s in (m, g)]
    bits = [bic.strategies.complexity(s) for s in (m, g)]
    p = map_fit.params
    z = (-p["gamma"] * 700.0 ** (1 - p["alpha"]) * (loss[0] - loss[1])
         - math.log(2) * (bits[0] ** p["beta"] - bits[1] ** p["beta"]))
    predicted = map_fit.predict(32, 700.0)
    assert predicted["predicted_weight"].item() == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-9)
    assert predicted["predicted_memorizing"].item() + predicted["predicted_generalizing"].item() == pytest.approx(1.0)


def test_nuts_predict_gives_credible_intervals_around_the_mean(nuts_fit):
    curve = nuts_fit.predict(8, np.geomspace(10, 10000, 7))
    assert (curve["weight_low"] <= curve["predicted_weight"]).all()
    assert (curve["predicted_weight"] <= curve["weight_high"]).all()
    steps = nuts_fit.transition_steps()
    finite = np.isfinite(steps["transition_high"])
    assert (steps["transition_low"][finite] <= steps["transition_step"][finite]).all()


def test_guards_flag_what_should_not_be_trusted():
    observations = xr.Dataset(
        {"modeled": ("condition", [True] * 3),
         "interpolation_distance": (("condition", "split"), [[0.01, 9.0], [0.9, 9.0], [0.0, 9.0]]),
         "d_MG": (("condition", "split"), [[1.0, 0.0], [1.0, 0.0], [1e-9, 0.0]])},
        coords={"split": ["id", "ood"], "diversity": ("condition", [4, 8, 16]), "step": ("condition", [10] * 3)})
    assert "1 of 3 modeled conditions" in guards.interpolation_guard(observations)[0]
    assert "[16]" in guards.strategy_distance_guard(observations)[0]
    steps = pd.DataFrame({"diversity": [4, 8, 16], "transition_step": [100.0, math.inf, 0.0],
                          "direction": ["G→M", "G", "M"]})
    message = guards.transition_guard(steps)[0]
    assert "D=8: never" in message and "D=16: at step 0" in message and "D=4" not in message
    assert guards.sampler_guard({"r_hat_max": 1.2, "divergences": 3, "ess_bulk_min": 50}).__len__() == 3
    assert guards.sampler_guard({"r_hat_max": 1.001, "divergences": 0, "ess_bulk_min": 2000}) == []
    assert guards.split_guard(np.array([True, True]), np.array([True, True]))


def test_identification_guard_needs_three_steps_and_diversities_and_a_moved_posterior():
    table = pd.DataFrame({"diversity": [4, 4, 8, 8, 16, 16], "step": [10, 20] * 3})
    identified, messages = guards.identification_guard(table, np.ones(6, dtype=bool))
    assert not identified and "2 modeled step(s) and 3 diversities" in messages[0]
    wide = pd.DataFrame({"diversity": np.repeat([4, 8, 16], 3), "step": [10, 20, 30] * 3})
    assert guards.identification_guard(wide, np.ones(9, dtype=bool)) == (True, [])
    identified, messages = guards.identification_guard(wide, np.ones(9, dtype=bool), sd_ratios={"alpha": 0.95})
    assert not identified and "alpha" in messages[0]


def test_nuts_summary_reports_coverage_elpd_effects_and_transition_conventions(nuts_fit):
    summary = nuts_fit.summary()
    table = nuts_fit.conditions
    for subset in ("fit", "heldout"):
        for split in ("id", "ood"):
            rows = table[(table["subset"] == subset) & (table["split"] == split) & table["observed_weight"].notna()]
            inside = ((rows["observed_weight"] >= rows["observed_low"])
                      & (rows["observed_weight"] <= rows["observed_high"])).mean()
            assert summary["coverage"][subset][split] == pytest.approx(inside)
    for split in ("id", "ood"):
        held = table[(table["subset"] == "heldout") & (table["split"] == split)]["log_predictive_density"]
        assert summary["elpd"][split]["elpd"] == pytest.approx(held.sum())
        assert summary["elpd"][split]["se"] == pytest.approx(np.sqrt(len(held)) * held.std(ddof=1))
    effects = summary["effects"]
    assert effects["kind"] == "run+trend" and effects["sigma_run"]["low"] <= effects["sigma_run"]["high"]
    fitted = sorted({int(d) for d in table.loc[table["in_fit"], "diversity"]})
    assert [r["diversity"] for r in effects["runs"]] == fitted
    assert nuts_fit.draws["run_effect"].shape == (nuts_fit.draws["alpha"].size, len(fitted))
    assert "median" in summary["transition_step_is"]
    for row in summary["transition_steps"]:
        assert {"transition_step", "transition_at_mean", "extrapolated"} <= set(row)
        assert row["extrapolated"] == (row["transition_step"] == "inf" or row["transition_step"] > 10000)


def test_infinite_transition_steps_are_the_string_inf_and_nan_is_null():
    from bayesicl.inference.pipeline import _transition_records

    frame = pd.DataFrame({"diversity": [4, 8], "transition_step": [math.inf, math.nan]})
    assert _transition_records(frame) == [{"diversity": 4, "transition_step": "inf"},
                                          {"diversity": 8, "transition_step": None}]


def test_load_fit_reads_a_folder_written_with_the_old_names(nuts_fit, tmp_path):
    from bayesicl.inference.folder import digests

    folder = nuts_fit.save(tmp_path / "fit")
    conditions = pd.read_csv(folder / "conditions.csv").rename(
        columns={"observed_low": "predicted_low", "observed_high": "predicted_high"})
    conditions.to_csv(folder / "conditions.csv", index=False, float_format="%.17g")
    summary = json.loads((folder / "summary.json").read_text())
    for leaf in summary["params"].values():
        leaf["hdi_low"], leaf["hdi_high"] = leaf.pop("low"), leaf.pop("high")
    summary["split"] = summary.pop("subset")
    (folder / "summary.json").write_text(json.dumps(summary))
    meta = json.loads((folder / "fit.json").read_text())
    meta["format_version"] = 1
    meta["files"] = digests(folder, list(meta["files"]))
    (folder / "fit.json").write_text(json.dumps(meta))
    loaded = load_fit(folder)
    assert {"observed_low", "observed_high"} <= set(loaded.conditions) and "predicted_low" not in loaded.conditions
    assert loaded.summary()["params"]["alpha"]["low"] == nuts_fit.summary()["params"]["alpha"]["low"]
    assert loaded.summary()["subset"] == nuts_fit.summary()["subset"]


def test_a_fit_without_heldout_conditions_says_so(evidence):
    result = fit(evidence, method="map", holdout=0.0, random_starts=1)
    assert any("no held-out conditions" in g for g in result.guards)
    assert result.summary()["n_conditions"]["heldout"] == 0


def test_complexity_override_and_prior_parsing():
    assert parse_complexity_overrides(["memorizing:64=1234.5"]) == {("memorizing", 64): 1234.5}
    assert parse_prior_overrides(["gamma=LogNormal(0, 1)"]) == {"gamma": "LogNormal(0, 1)"}
    with pytest.raises(BayesiclError):
        parse_complexity_overrides(["memorizing:64"])
    with pytest.raises(BayesiclError):
        parse_prior_overrides(["alpha"])


def test_fit_refuses_bad_arguments(evidence):
    with pytest.raises(BayesiclError):
        fit(evidence, method="mcmc")
    with pytest.raises(BayesiclError):
        fit(evidence, method="map", holdout=1.0)
    with pytest.raises(BayesiclError):
        fit(evidence, method="map", variant="delta0")
    with pytest.raises(BayesiclError):
        fit(evidence, method="map", priors={"alpha": "Normal(0, 1)"})
    with pytest.raises(BayesiclError):
        fit(evidence, method="map", complexity_override={("memorizing", 3): 10.0})


def write_runs(root, task):
    from bayesicl.runs import RunWriter

    for diversity in (2, 4, 8):
        pool = task.pool(diversity, seed=0)
        inputs = task.eval_sets(pool, seed=0, num_sequences=8)
        m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
        writer = RunWriter(root / f"D{diversity}", task, pool, inputs)
        for k, step in enumerate((10, 100, 1000, 10000)):
            w = (k + 1) / 5 * (1 - diversity / 16)
            writer.log(step, {split: mixture_output(np.log(np.stack([m(b), g(b)])), np.array([w, 1 - w]),
                                                    "log_probs") for split, b in inputs.items()})


def test_command_line_fit_writes_the_report(tmp_path, capsys):
    task = bic.task("urns", num_dims=4, context_length=8)
    write_runs(tmp_path / "runs", task)
    out = tmp_path / "fit"
    code = cli_main(["fit", str(tmp_path / "runs"), "--out", str(out), "--method", "map", "--all-steps",
                     "--set-k", "memorizing:2=500", "--prior", "alpha=Beta(2,3)"])
    assert code == 0
    for name in ("summary.json", "conditions.csv", "phase_diagram.png", "fit.json"):
        assert (out / name).exists(), name
    complexity = pd.read_csv(out / "strategy_complexity.csv", index_col=0)
    assert complexity.loc[2, "memorizing"] == 500.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["priors"]["alpha"] == "Beta(2, 3)"
    assert load_fit(out).predict(4, 100)["predicted_weight"].between(0, 1).all()
    code = cli_main(["fit", str(tmp_path / "runs"), "--out", str(out), "--set-k", "memorizing"])
    assert code == 1
    assert "--set-k" in capsys.readouterr().err


def test_three_strategies_fit_and_report_every_weight():
    task = bic.task("urns", num_dims=4, context_length=8)
    kinds = ("memorizing", "generalizing", "constant")
    evidence = synthetic_evidence(task, DIVERSITIES, STEPS, params=TRUTH, strategies=kinds, num_sequences=8,
                                  loss_sequences=64)
    result = fit(evidence, method="nuts", holdout=0.25, num_samples=300, num_warmup=300, random_starts=2)
    table = result.conditions
    for kind in kinds:
        assert f"predicted_{kind}" in table and f"observed_{kind}" in table
    np.testing.assert_allclose(table[[f"predicted_{k}" for k in kinds]].sum(axis=1), 1.0, rtol=1e-9)
    assert result.idata.log_likelihood["convex_weights"].dims == ("chain", "draw", "condition")
    for name, value in zip(("alpha", "beta", "gamma"), TRUTH):      # noise-free data: tight and right
        assert result.params[name] == pytest.approx(value, rel=0.01)
    pair = result.transition_steps(pair=("memorizing", "constant"))
    assert len(pair) == len(DIVERSITIES) and not any("interpolation distance" in g for g in result.guards)
