"""Evidence is built by streaming: its memory does not grow with the number of checkpoints,
and what it keeps per condition gives the same numbers as the token-level outputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bayesicl as bic
from bayesicl.evidence import build_evidence, evidence_from_arrays
from bayesicl.evidence.statistics import quintic_hermite
from bayesicl.evidence.stream import open_lazy
from bayesicl.runs import RunWriter, open_run

# Large enough that the token arrays of 100 checkpoints (2 splits × 256 sequences × 128
# positions × 8 colours, 2 MB float32 each) would dominate the process if they were held.
SEQUENCES, LENGTH, CHECKPOINTS = 256, 128, 100

PEAK = """
import resource, sys
from bayesicl.evidence import build_evidence
evidence = build_evidence(sys.argv[1], loss_sequences=16, cache=False)
assert evidence.num_conditions == int(sys.argv[2]), evidence.num_conditions
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.fixture(scope="module")
def long_and_short_runs(tmp_path_factory):
    """One urns run with 100 checkpoints, and a copy of its first 25 (same everything else)."""
    root = tmp_path_factory.mktemp("streaming")
    task = bic.task("urns", num_dims=8, context_length=LENGTH)
    pool = task.pool(4, seed=0)
    evals = task.eval_sets(pool, seed=0, num_sequences=SEQUENCES)
    m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
    pair = {s: (m(b), g(b)) for s, b in evals.items()}
    writer = RunWriter(root / "long" / "D4", task, pool, evals, seed=0, dtype="float16")
    for k, w in enumerate(np.linspace(0.05, 0.95, CHECKPOINTS)):
        writer.log(10 * (k + 1), {s: np.log(w * pm + (1 - w) * pg) for s, (pm, pg) in pair.items()}, loss=1.0)
    writer.close()
    short = root / "short" / "D4"
    (short / "checkpoints").mkdir(parents=True)
    for name in ("run.json", "inputs.nc", "loss.csv"):
        shutil.copy(root / "long" / "D4" / name, short / name)
    for file in sorted((root / "long" / "D4" / "checkpoints").glob("*.nc"))[:CHECKPOINTS // 4]:
        shutil.copy(file, short / "checkpoints" / file.name)
    return root / "long", root / "short"


def peak_rss(folder: Path, conditions: int) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(folder), str(conditions)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_peak_memory_of_building_evidence_does_not_grow_with_the_checkpoints(long_and_short_runs):
    long, short = long_and_short_runs
    quarter = peak_rss(short, CHECKPOINTS // 4)
    full = peak_rss(long, CHECKPOINTS)
    extra = (CHECKPOINTS - CHECKPOINTS // 4) * 2 * SEQUENCES * LENGTH * 8 * 4   # the 75 more checkpoints, float32
    assert full <= 1.2 * quarter, (full / 2 ** 20, quarter / 2 ** 20)
    # The ratio alone is weak when the per-checkpoint working set is large; the growth must also
    # stay below half of what holding the extra checkpoints' tokens would add.
    assert full - quarter < extra / 2, ((full - quarter) / 2 ** 20, extra / 2 ** 20)


def test_a_lazily_opened_run_matches_the_validated_run(long_and_short_runs):
    long, _ = long_and_short_runs
    lazy, whole = open_lazy(long / "D4"), open_run(long / "D4")
    assert lazy.content_hash == whole.content_hash and lazy.settings == whole.settings
    np.testing.assert_array_equal(lazy.steps, whole.steps)
    np.testing.assert_array_equal(lazy.checkpoint(7), whole.outputs.isel(step=7).values)


def test_streamed_evidence_equals_the_evidence_of_the_same_outputs_in_memory(long_and_short_runs):
    _, short = long_and_short_runs
    streamed = build_evidence(short, loss_sequences=16, cache=False)
    arrays = streamed.arrays
    direct = evidence_from_arrays(streamed.task, streamed.strategies, arrays["transformer"].values,
                                  arrays["strategy"].values, streamed.conditions["diversity"],
                                  streamed.conditions["step"], loss=streamed.loss,
                                  complexity=streamed.complexity)
    columns = [c for c in direct.conditions.columns if c != "modeled"]
    np.testing.assert_allclose(streamed.conditions[columns].to_numpy(float), direct.conditions[columns].to_numpy(float),
                               rtol=1e-12, atol=1e-15)
    for name in ("objective_value", "objective_slope", "objective_curvature", "curve_value"):
        np.testing.assert_allclose(streamed.statistics[name].values, direct.statistics[name].values, rtol=1e-12)
    assert streamed.cutoff_step == direct.cutoff_step


def test_a_checkpoint_changed_after_opening_is_refused(long_and_short_runs, tmp_path):
    _, short = long_and_short_runs
    copy = tmp_path / "D4"
    shutil.copytree(short / "D4", copy)
    lazy = open_lazy(copy)
    files = sorted((copy / "checkpoints").glob("*.nc"))
    files[3].write_bytes(files[2].read_bytes())
    with pytest.raises(bic.BayesiclError, match="changed while the evidence was being built|holds step"):
        lazy.checkpoint(3)


def test_the_tabulated_objective_reads_the_exact_kl_between_nodes():
    # f(w) = mean KL(T ‖ wM + (1 − w)G) on random distributions, far from any node.
    rng = np.random.default_rng(0)
    task = bic.task("urns", num_dims=5, context_length=6)
    s = np.log(rng.dirichlet(np.ones(5) * 0.3, size=(1, 2, 2, 16, 6)))
    t = np.log(rng.dirichlet(np.ones(5), size=(1, 2, 16, 6)))
    ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4], step=[1],
                              loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    table = ev.statistics
    p_t = np.exp(t[0, 0] - np.log(np.exp(t[0, 0]).sum(-1, keepdims=True)))
    m, g = (np.exp(s[0, k, 0]) / np.exp(s[0, k, 0]).sum(-1, keepdims=True) for k in (0, 1))
    for w in (0.013, 0.31, 0.777, 0.9991):
        h = w * m + (1 - w) * g
        exact = np.sum(p_t * (np.log(p_t) - np.log(h)), -1).mean()
        value, slope, _ = quintic_hermite(table["node_value"].values, table["objective_value"].values[0],
                                          table["objective_slope"].values[0],
                                          table["objective_curvature"].values[0], np.array(w))
        # On random distributions (far from any mixture) the quintic reads f to 1.1e-8 relative at
        # w = 0.31 but only 1.3e-5 at w = 0.9991, where f steepens; the slope to 1.5e-6. On the
        # shipped urns runs the MAP objective moved 2e-10. (Known limit, docs/decisions.md.)
        assert value == pytest.approx(exact, rel=1e-4, abs=1e-12)
        exact_slope = -np.sum(p_t * (m - g) / h, -1).mean()
        # the slope: 1.5e-6 relative mid-range, 8e-4 at w = 0.9991 (the known limit above)
        assert slope == pytest.approx(exact_slope, rel=1e-5 if w < 0.99 else 2e-3)
