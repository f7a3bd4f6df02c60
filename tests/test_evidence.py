"""The evidence (docs/model.md#observed-weights): labelled observations per condition and split,
built from arrays and from logged runs, cached outside the runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesicl as bic
import bayesicl.strategies
from bayesicl.errors import BayesiclError
from bayesicl.evidence import build as build_module
from bayesicl.evidence import build_evidence, evidence_from_arrays, stored
from bayesicl.evidence.table import labelled_table
from bayesicl.runs import RunWriter, open_runs

MG = ("memorizing", "generalizing")
SEQUENCES = 6
LOSS_SEQUENCES = 16


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory (the cache location is an env override)."""
    monkeypatch.setenv("BAYESICL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def unit_terms(diversities, strategies=MG):
    """Placeholder L̄ and K (the distances under test do not depend on them)."""
    frame = pd.DataFrame(1.0, index=sorted(set(diversities)), columns=list(strategies))
    return {"loss": frame, "complexity": frame * 100}


# -- from arrays ------------------------------------------------------------------------------------

def test_the_dataset_the_flat_table_and_the_arrays_have_the_contract_labels_and_shapes():
    rng = np.random.default_rng(0)
    task = bic.task("urns", num_dims=4, context_length=5)
    kinds = ("memorizing", "generalizing", "constant")
    strategies = np.log(rng.dirichlet(np.ones(4), size=(3, 3, 2, SEQUENCES, 5)))   # R=3 runs
    # Conditions listed run by run, runs in order of first appearance: (8,0), (4,0), (4,1).
    diversity = [8, 8, 4, 4, 4, 4]
    seed = [0, 0, 0, 0, 1, 1]
    step = [10, 20, 10, 20, 10, 20]
    transformer = np.log(rng.dirichlet(np.ones(4), size=(6, 2, SEQUENCES, 5)))
    ev = evidence_from_arrays(task, kinds, transformer, strategies, diversity=diversity, step=step, seed=seed,
                              cutoff="all", **unit_terms(diversity, kinds))
    assert dict(ev.dataset.sizes) == {"condition": 6, "split": 2, "strategy": 3}
    assert list(ev.dataset.indexes["condition"].names) == ["configuration", "diversity", "seed", "step"]
    assert ev.dataset["split"].values.tolist() == ["id", "ood"]
    observed = ("d_TM", "d_TG", "d_MG", "r", "observed_weight", "interpolation_distance")
    assert all(ev.dataset[name].dims == ("condition", "split") for name in observed)
    assert ev.dataset["convex_weight"].dims == ("condition", "split", "strategy")
    assert ev.dataset["modeled"].dims == ("condition",)
    assert ev.configuration == "urns"                          # a lone configuration: the family's name
    # The flat table derives from the dataset: one column per variable and split.
    split_columns = [f"{name}_{split}" for split in ("id", "ood") for name in
                     (*observed, "observed_memorizing", "observed_generalizing", "observed_constant")]
    assert list(ev.conditions.columns) == ["condition", "run", "diversity", "seed", "step",
                                           *split_columns, "modeled"]
    np.testing.assert_array_equal(ev.conditions["r_ood"], ev.dataset["r"].sel(split="ood"))
    back = labelled_table(ev.conditions)                       # ... and is labelled again without loss
    for name in (*observed, "convex_weight", "modeled", "run", "step"):
        np.testing.assert_array_equal(back[name], ev.dataset[name])
    assert back["strategy"].values.tolist() == list(kinds)
    assert ev.conditions["run"].tolist() == [0, 0, 1, 1, 2, 2]
    assert ev.conditions["condition"].tolist() == list(range(6))
    assert ev.arrays["transformer"].dims == ("condition", "split", "sequence", "position", "output")
    assert ev.arrays["transformer"].shape == (6, 2, SEQUENCES, 5, 4)
    assert ev.arrays["strategy"].shape == (3, 3, 2, SEQUENCES, 5, 4)
    assert ev.arrays["transformer"].dtype == np.float32
    assert ev.arrays["scored"].values.tolist() == [True] * 5
    assert ev.arrays["run_diversity"].values.tolist() == [8, 4, 4]
    assert ev.loss.index.tolist() == [4, 8] and list(ev.loss.columns) == list(kinds)
    assert ev.output_kind == "log_probs" and ev.strategies == kinds and ev.runs_hash is None
    np.testing.assert_allclose(ev.dataset["convex_weight"].sum("strategy"), 1.0, atol=1e-9)


def test_evidence_sel_picks_conditions_by_diversity_and_step_and_observations_by_split():
    # Two runs (D = 4, 64) with checkpoints at steps 1000 and 5000; T mixes M and G with a
    # known weight per condition, so each selection can be checked against its construction.
    rng = np.random.default_rng(6)
    task = bic.task("regression", num_dims=2, context_length=3)
    weights = [[0.1, 0.3], [0.6, 0.9]]
    transformer, strategies, _, step = regression_trajectories(rng, weights, [[0.0, 0.0]] * 2, [1000, 5000])
    diversity = np.repeat([4, 64], 2)
    ev = evidence_from_arrays(task, MG, transformer, strategies, diversity=diversity, step=step,
                              **unit_terms(diversity), cutoff="all")

    one = ev.sel(diversity=64, step=5000)
    assert isinstance(one, xr.Dataset) and one.sizes["condition"] == 1
    assert one["configuration"].values.tolist() == ["regression"] and one["run"].values.tolist() == [1]
    np.testing.assert_allclose(one["observed_weight"].sel(split="id"), [0.9], atol=1e-6)
    np.testing.assert_allclose(one["observed_weight"].sel(split="ood"), [0.9], atol=1e-6)
    # d(T, M) of that condition, computed from the outputs directly (mean squared error).
    d_tm = ((transformer[3] - strategies[1, 0]) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(one["d_TM"].squeeze("condition").values, d_tm, rtol=1e-6)

    trajectory = ev.sel(diversity=64, split="id")["observed_weight"]
    assert trajectory["step"].values.tolist() == [1000, 5000]
    np.testing.assert_allclose(trajectory, [0.6, 0.9], atol=1e-6)
    np.testing.assert_allclose(ev.sel(step=1000, split="id")["observed_weight"], [0.1, 0.6], atol=1e-6)

    renamed = ev.with_configuration("mlp_width=64")
    assert renamed.sel(configuration="mlp_width=64").sizes["condition"] == 4
    assert ev.configuration == "regression"                    # the original is unchanged


def test_evidence_from_arrays_takes_everything_but_the_outputs_by_keyword():
    task = bic.task("urns", num_dims=3, context_length=4)
    rng = np.random.default_rng(7)
    strategies = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 2, SEQUENCES, 4)))
    transformer = np.log(rng.dirichlet(np.ones(3), size=(2, 2, SEQUENCES, 4)))
    with pytest.raises(TypeError):
        evidence_from_arrays(task, MG, transformer, strategies, [4, 4], [1, 2], **unit_terms([4]))


def orthogonal_noise(rng, direction):
    """Noise orthogonal to `direction` over all its entries (keeps r exact under squared error)."""
    noise = rng.standard_normal(direction.shape)
    noise -= direction * (noise * direction).sum() / (direction * direction).sum()
    return noise / np.sqrt((noise ** 2).mean())


def regression_trajectories(rng, weights, amplitudes, steps):
    """T = G + w (M − G) + a·E with E ⟂ (M − G) and mean E² = 1: then w̃ = w exactly and the
    interpolation distance is a² (squared error)."""
    num_runs = len(weights)
    strategies = rng.standard_normal((num_runs, 2, 2, SEQUENCES, 3, 1))
    transformer = []
    for r in range(num_runs):
        for w, a in zip(weights[r], amplitudes[r]):
            split_outputs = []
            for k in range(2):
                m, g = strategies[r, 0, k], strategies[r, 1, k]
                split_outputs.append(g + w * (m - g) + a * orthogonal_noise(rng, m - g))
            transformer.append(np.stack(split_outputs))
    diversity = np.repeat([4 * 2 ** r for r in range(num_runs)], len(steps))
    return np.stack(transformer), strategies, diversity, np.tile(steps, num_runs)


def test_observed_weights_and_interpolation_distances_match_the_construction():
    rng = np.random.default_rng(1)
    task = bic.task("regression", num_dims=2, context_length=3)
    weights = [[0.1, 0.4, 0.9], [1.0, 0.0, 0.7]]
    amplitudes = [[0.0, 0.5, 2.0], [1.0, 0.3, 0.0]]
    transformer, strategies, diversity, step = regression_trajectories(rng, weights, amplitudes, [10, 20, 30])
    ev = evidence_from_arrays(task, MG, transformer, strategies, diversity=diversity, step=step,
                              **unit_terms(diversity), cutoff="all")
    for split in ("id", "ood"):
        observed = ev.sel(split=split)
        np.testing.assert_allclose(observed["observed_weight"], np.ravel(weights), atol=1e-5)
        np.testing.assert_allclose(observed["interpolation_distance"], np.ravel(amplitudes) ** 2, atol=1e-5)
        k = ("id", "ood").index(split)
        d_tm = ((transformer[:, k] - strategies[observed["run"].values, 0, k]) ** 2).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(observed["d_TM"], d_tm, rtol=1e-5)


def test_paper_cutoff_uses_q_0_1_for_regression_and_the_latest_run():
    # Interpolation distances (a²): D=4: 9, 4, 1, 0.25, 0 → threshold 0.9 → step 40;
    # D=8: 1, 1, 0.04, 0.01, 0 → threshold 0.1 → step 30. N_0 = 40 (with q = 0.2 it would be 30).
    rng = np.random.default_rng(2)
    task = bic.task("regression", num_dims=2, context_length=3)
    steps = [10, 20, 30, 40, 50]
    amplitudes = [[3.0, 2.0, 1.0, 0.5, 0.0], [1.0, 1.0, 0.2, 0.1, 0.0]]
    transformer, strategies, diversity, step = regression_trajectories(rng, [[0.5] * 5] * 2, amplitudes, steps)
    terms = unit_terms(diversity) | {"diversity": diversity, "step": step}
    paper = evidence_from_arrays(task, MG, transformer, strategies, **terms)
    assert paper.cutoff_step == 40
    assert paper.dataset["modeled"].values.tolist() == [False, False, False, True, True] * 2
    everything = evidence_from_arrays(task, MG, transformer, strategies, **terms, cutoff="all")
    assert everything.cutoff_step == 10 and everything.dataset["modeled"].all()
    fixed = evidence_from_arrays(task, MG, transformer, strategies, **terms, cutoff=25)
    assert fixed.dataset["modeled"].values.tolist() == [False, False, True, True, True] * 2
    with pytest.raises(BayesiclError, match="cutoff"):
        evidence_from_arrays(task, MG, transformer, strategies, **terms, cutoff="late")


def test_the_iwl_split_travels_in_the_arrays_but_never_enters_a_distance():
    rng = np.random.default_rng(3)
    task = bic.task("classification", num_dims=2, context_length=4)
    strategies = np.log(rng.dirichlet(np.ones(2), size=(1, 2, 3, SEQUENCES, 1)))
    transformer = np.log(rng.dirichlet(np.ones(2), size=(2, 3, SEQUENCES, 1)))
    terms = unit_terms([4]) | {"diversity": [4, 4], "step": [1, 2], "cutoff": "all"}
    ev = evidence_from_arrays(task, MG, transformer, strategies, **terms)
    changed = transformer.copy()
    changed[:, 2] = np.log(rng.dirichlet(np.ones(2), size=(2, SEQUENCES, 1)))
    ev_changed = evidence_from_arrays(task, MG, changed, strategies, **terms)
    xr.testing.assert_identical(ev.dataset, ev_changed.dataset)
    assert ev.arrays["split"].values.tolist() == ["id", "ood", "iwl"]
    assert ev.arrays["transformer"].sizes["position"] == 1
    assert ev.dataset["split"].values.tolist() == ["id", "ood"]


def test_loss_and_complexity_come_from_the_pools_and_average_over_seeds():
    task = bic.task("urns", num_dims=3, context_length=4)
    pools = {(4, 0): task.pool(4, seed=0), (4, 1): task.pool(4, seed=1)}
    rng = np.random.default_rng(4)
    strategies = np.log(rng.dirichlet(np.ones(3), size=(2, 2, 2, SEQUENCES, 4)))
    transformer = np.log(rng.dirichlet(np.ones(3), size=(4, 2, SEQUENCES, 4)))
    ev = evidence_from_arrays(task, MG, transformer, strategies, diversity=[4, 4, 4, 4], step=[1, 2, 1, 2],
                              seed=[0, 0, 1, 1], pools=pools, loss_sequences=LOSS_SEQUENCES, cutoff="all")
    for kind in MG:
        direct = [bic.strategies.loss(task, bic.strategies.for_task(task, pool, (kind,))[kind], pool,
                                      LOSS_SEQUENCES, seed)
                  for (_, seed), pool in pools.items()]
        assert ev.loss.loc[4, kind] == pytest.approx(np.mean(direct), rel=1e-12)
        bits = [bic.strategies.complexity(bic.strategies.for_task(task, pool, (kind,))[kind])
                for pool in pools.values()]
        assert ev.complexity.loc[4, kind] == pytest.approx(np.mean(bits), rel=1e-12)


def test_bad_arrays_are_refused_with_one_line_messages():
    task = bic.task("urns", num_dims=3, context_length=4)
    rng = np.random.default_rng(5)
    strategies = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 2, SEQUENCES, 4)))
    transformer = np.log(rng.dirichlet(np.ones(3), size=(2, 2, SEQUENCES, 4)))
    terms = unit_terms([4])
    nan = transformer.copy()
    nan[0, 0, 0, 0, 0] = np.nan
    two = {"diversity": [4, 4], "step": [1, 2]}
    cases = [
        (lambda: evidence_from_arrays(task, MG, nan, strategies, **two, **terms), "NaN"),
        (lambda: evidence_from_arrays(task, MG, transformer, strategies[:, :1], **two, **terms), "shape"),
        (lambda: evidence_from_arrays(task, MG, transformer, strategies, diversity=[4, 8], step=[1, 2], **terms),
         "runs"),
        (lambda: evidence_from_arrays(task, MG, transformer, strategies, diversity=[4, 4], step=[1, 1], **terms),
         "same run"),
        (lambda: evidence_from_arrays(task, MG, transformer, strategies, **two), "loss and complexity"),
    ]
    for call, message in cases:
        with pytest.raises(BayesiclError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


# -- from logged runs ---------------------------------------------------------------------------

def write_runs(directory: Path, task, diversities, weights, seed=0, steps=(20, 80, 200)):
    """Runs whose outputs mix the real strategies: weight weights[i] on M at steps[i]."""
    for D in diversities:
        pool = task.pool(D, seed=seed)
        evals = task.eval_sets(pool, seed=seed, num_sequences=SEQUENCES)
        writer = RunWriter(directory / f"D{D}-s{seed}", task, pool, evals, seed=seed)
        m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
        for step, w in zip(steps, weights):
            if task.family == "regression":
                outputs = {s: w * m(b) + (1 - w) * g(b) for s, b in evals.items()}
            else:
                outputs = {s: np.log(w * m(b) + (1 - w) * g(b)) for s, b in evals.items()}
            writer.log(step, outputs, loss=1.0)


def tree_digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(directory.rglob("*"))}


def test_build_evidence_from_runs_reads_every_run_and_checkpoint(tmp_path):
    task = bic.task("regression", num_dims=2, context_length=4)
    write_runs(tmp_path / "runs", task, (2, 8), weights=(0.0, 0.5, 1.0))
    ev = build_evidence(tmp_path / "runs", loss_sequences=LOSS_SEQUENCES, cache=False)
    assert ev.conditions[["diversity", "step"]].values.tolist() == [
        [2, 20], [2, 80], [2, 200], [8, 20], [8, 80], [8, 200]]
    # Predictions are linear in the weight, so w̃ recovers it (float32 storage).
    np.testing.assert_allclose(ev.sel(split="id")["observed_weight"], [0.0, 0.5, 1.0] * 2, atol=1e-4)
    np.testing.assert_allclose(ev.sel(diversity=8, step=80, split="ood")["observed_weight"], [0.5], atol=1e-4)
    runs = open_runs(tmp_path / "runs")
    assert ev.settings == runs[0].settings
    np.testing.assert_allclose(ev.arrays["target"].values[1, 0, :, :, 0], runs[1].inputs["id"]["y"], rtol=1e-6)
    assert ev.runs_hash is not None and ev.output_kind == "predictions"


def test_build_evidence_classification_compares_the_query_output(tmp_path):
    task = bic.task("classification", num_dims=2, context_length=4)
    write_runs(tmp_path / "runs", task, (2, 4), weights=(0.0, 1.0), steps=(20, 80))
    ev = build_evidence(tmp_path / "runs", loss_sequences=LOSS_SEQUENCES, cache=False)
    assert ev.arrays["transformer"].shape[2:] == (SEQUENCES, 1, 2)
    assert ev.arrays["split"].values.tolist() == ["id", "ood", "iwl"]
    np.testing.assert_allclose(ev.sel(split="id")["observed_weight"], [0.0, 1.0] * 2, atol=1e-4)


def test_cache_hits_recomputes_after_a_run_changes_and_never_writes_into_the_runs(tmp_path, private_cache,
                                                                               monkeypatch):
    task = bic.task("urns", num_dims=3, context_length=4)
    runs = tmp_path / "runs"
    write_runs(runs, task, (2, 4), weights=(0.0, 0.5, 1.0))
    before = tree_digest(runs)
    builds, losses = [], []
    real_build, real_loss = build_module.assemble, bayesicl.strategies.paired_losses
    monkeypatch.setattr(build_module, "assemble", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    monkeypatch.setattr(bayesicl.strategies, "paired_losses", lambda *a, **k: losses.append(1) or real_loss(*a, **k))

    first = build_evidence(runs, loss_sequences=LOSS_SEQUENCES)
    assert (len(builds), len(losses)) == (1, 2)                   # 2 runs, both strategies at once
    second = build_evidence(runs, loss_sequences=LOSS_SEQUENCES)
    assert (len(builds), len(losses)) == (1, 2)                   # a cache hit: nothing recomputed
    xr.testing.assert_identical(first.dataset, second.dataset)    # the labels survive the cache
    pd.testing.assert_frame_equal(first.conditions, second.conditions)
    pd.testing.assert_frame_equal(first.loss, second.loss)
    pd.testing.assert_frame_equal(first.loss_difference, second.loss_difference)
    pd.testing.assert_frame_equal(first.loss_difference_se, second.loss_difference_se)
    np.testing.assert_array_equal(first.arrays["transformer"].values, second.arrays["transformer"].values)
    assert second.task == first.task and second.cutoff_step == first.cutoff_step
    assert tree_digest(runs) == before
    assert any(private_cache.rglob("statistics.nc")) and any(private_cache.rglob("run-0001.npy"))

    # A new checkpoint changes the run's content hash: the evidence is rebuilt, L̄ is reused.
    pool = task.pool(4, seed=0)
    evals = task.eval_sets(pool, seed=0, num_sequences=SEQUENCES)
    m = bic.strategies.memorizing(task, pool)
    RunWriter(runs / "D4-s0", task, pool, evals).log(500, {s: np.log(m(b)) for s, b in evals.items()})
    third = build_evidence(runs, loss_sequences=LOSS_SEQUENCES)
    assert (len(builds), len(losses)) == (2, 2)
    assert third.conditions["step"].tolist() == [20, 80, 200, 20, 80, 200, 500]
    # A different strategy list or cutoff is another entry.
    build_evidence(runs, loss_sequences=LOSS_SEQUENCES, cutoff="all")
    assert len(builds) == 3
    # The other K convention reuses the stored outputs and L̄ and recomputes only K.
    paper = build_evidence(runs, loss_sequences=LOSS_SEQUENCES, complexity_convention="paper")
    assert (len(builds), len(losses)) == (3, 2) and paper.complexity_convention == "paper"
    pd.testing.assert_frame_equal(paper.loss, third.loss)
    pd.testing.assert_frame_equal(paper.conditions, third.conditions)
    assert (paper.complexity > third.complexity).all().all()      # the paper's K_code is longer


def test_build_evidence_refuses_inputs_it_cannot_fit(tmp_path):
    urns = bic.task("urns", num_dims=3, context_length=4)
    (tmp_path / "empty").mkdir()
    write_runs(tmp_path / "mixed_settings", urns, (2,), weights=(0.0, 1.0), steps=(20, 80))
    write_runs(tmp_path / "mixed_settings", bic.task("urns", num_dims=3, context_length=5), (4,),
               weights=(0.0, 1.0), steps=(20, 80))
    write_runs(tmp_path / "mixed_families", urns, (2,), weights=(0.0, 1.0), steps=(20, 80))
    write_runs(tmp_path / "mixed_families", bic.task("regression", num_dims=3, context_length=4), (4,),
               weights=(0.0, 1.0), steps=(20, 80))
    write_runs(tmp_path / "single", urns, (2, 4), weights=(0.0,), steps=(20,))
    write_runs(tmp_path / "good", urns, (2, 4), weights=(0.0, 1.0), steps=(20, 80))
    good = open_runs(tmp_path / "good")
    nan_run = dataclasses.replace(good[1], outputs=good[1].outputs.copy(data=np.full(good[1].outputs.shape, np.nan)))
    cases = [
        (tmp_path / "empty", "no runs"),
        (tmp_path / "mixed_settings", "setting differs"),
        (tmp_path / "mixed_families", "family"),
        (tmp_path / "single", "single checkpoint"),
        ([good[0], nan_run], "NaN"),
        ([good[0], good[0]], "same diversity and seed"),
        ([], "no runs"),
    ]
    for runs, message in cases:
        with pytest.raises(BayesiclError, match=message) as error:
            build_evidence(runs, loss_sequences=LOSS_SEQUENCES, cache=False)
        assert "\n" not in str(error.value)
    assert not os.listdir(tmp_path / "empty")


def test_a_cache_entry_of_an_older_format_is_a_miss_and_the_evidence_is_built_again(tmp_path, private_cache):
    task = bic.task("urns", num_dims=3, context_length=4)
    write_runs(tmp_path / "runs", task, (2,), weights=(0.0, 1.0), steps=(20, 80))
    build_evidence(tmp_path / "runs", loss_sequences=LOSS_SEQUENCES)
    (entry,) = (private_cache / "evidence").iterdir()
    meta = entry / "evidence.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"format": stored.EVIDENCE_FORMAT - 1}))
    assert stored.load_evidence(entry.name) is None
    again = build_evidence(tmp_path / "runs", loss_sequences=LOSS_SEQUENCES)
    assert again.sel(step=80, split="id")["observed_weight"].values.tolist() == pytest.approx([1.0], abs=1e-4)
