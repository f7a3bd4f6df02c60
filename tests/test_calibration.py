"""Calibration of the NUTS fit when runs misfit the model the way real runs do (issue 9).

Real transformer runs carry a log-odds offset per run and residuals that drift together along
a run's checkpoints; a likelihood of independent conditions then gives intervals far too
narrow (1 of 15 truths covered at offset sd 1). Here synthetic evidence is built through the
public API — `bayesicl.inference.synthetic.misfit_weights` on the shared urns grid (9 diversities ×
20 steps, tests/fit_reference.py) — with per-run offsets (sd 0.5 and 1) and an AR(1)
deviation along each run (sd 0.3, lag-1 correlation 0.7), and fitted with `bayesicl.inference.fit`
(default effects: run + trend). Reduced for the unit suite (3 truths, short chains); the full
measurement (5 truths, default chains) is benchmarks/calibration.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from fit_reference import DIVERSITIES, STEPS, random_truths

from bayesicl.inference import fit
from bayesicl.inference.synthetic import misfit_weights, synthetic_evidence

NAMES = ("alpha", "beta", "gamma")


@pytest.mark.parametrize("run_sd", [0.5, 1.0])
def test_intervals_cover_the_truth_under_run_offsets_and_within_run_drift(grid, run_sd):
    task, outputs, terms = grid
    covered, inside, held = 0, 0, 0
    for seed, truth in enumerate(random_truths(grid, count=3, seed=2024)):
        weights = misfit_weights(truth, run_sd=run_sd, trend_sd=0.3, trend_corr=0.7, seed=seed)
        evidence = synthetic_evidence(task, DIVERSITIES, STEPS, weights=weights, outputs=outputs, terms=terms)
        result = fit(evidence, method="nuts", seed=seed, random_starts=2, num_chains=2,
                     num_samples=400, num_warmup=400)
        summary = result.summary()
        assert summary["effects"]["kind"] == "run+trend" and summary["identified"]
        for name, value in zip(NAMES, truth):
            covered += summary["params"][name]["low"] <= value <= summary["params"][name]["high"]
        table = result.conditions
        rows = table[(table["subset"] == "heldout") & table["observed_weight"].notna()]
        inside += int(((rows["observed_weight"] >= rows["observed_low"])
                       & (rows["observed_weight"] <= rows["observed_high"])).sum())
        held += len(rows)
    assert covered >= 7, covered                       # of 9 checks (≥ 12 of 15 in the benchmark)
    assert 0.78 <= inside / held <= 0.98, inside / held


def test_misfit_weights_add_run_offsets_and_an_autocorrelated_drift(grid):
    """The simulated deviation from the model's log-odds has the asked structure: offsets
    shared within a run, AR(1) lag-1 correlation ≈ 0.7 along it (pooled over many runs)."""
    _, _, (loss, complexity) = grid
    truth = (0.6, 0.2, 0.85)
    diversity = np.repeat(np.array(DIVERSITIES), STEPS.size)
    step = np.tile(STEPS, len(DIVERSITIES))
    from fit_reference import log_odds

    base = log_odds(truth, loss, complexity, diversity, step)
    lag1, offsets = [], []
    for seed in range(40):
        w = misfit_weights(truth, run_sd=1.0, trend_sd=0.3, trend_corr=0.7, seed=seed)(loss, complexity, diversity, step)
        deviation = (np.log(w / (1 - w)) - base).reshape(len(DIVERSITIES), STEPS.size)
        offsets.extend(deviation.mean(axis=1))
        centred = deviation - deviation.mean(axis=1, keepdims=True)
        lag1.append(np.sum(centred[:, 1:] * centred[:, :-1]) / np.sum(centred ** 2))
    assert np.std(offsets) == pytest.approx(1.0, rel=0.15)
    # Within-run demeaning biases the lag-1 estimate of a 20-step AR(1) down by ~0.1.
    assert 0.5 <= np.mean(lag1) <= 0.75


def test_synthetic_outputs_stored_in_float16_move_the_observed_weight_by_less_than_the_resolution(grid):
    """The benchmark stores its synthetic outputs in float16 like the shipped runs; the rounding
    moves an observed weight far less than the likelihood's resolution ε (inference.model.RESOLUTION)."""
    from bayesicl import BayesiclError
    from bayesicl.inference.model import RESOLUTION

    task, outputs, terms = grid
    first_three = (outputs[0][:3], outputs[1])                # the strategies' outputs of D = 4, 8, 16
    made = {dtype: synthetic_evidence(task, DIVERSITIES[:3], STEPS[::5], params=(0.6, 0.2, 0.85), outputs=first_three,
                                      terms=terms, output_dtype=dtype).sel(split="id")["observed_weight"].to_numpy()
            for dtype in ("float32", "float16")}
    difference = np.abs(made["float16"] - made["float32"])
    assert 0 < difference.max() < RESOLUTION
    with pytest.raises(BayesiclError, match="output_dtype"):
        synthetic_evidence(task, DIVERSITIES[:3], STEPS[:2], params=(0.6, 0.2, 0.85), outputs=first_three, terms=terms,
                           output_dtype="int8")
