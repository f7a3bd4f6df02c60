"""Training: every family trains and logs its checkpoints, runs are deterministic, resume gives
the outputs of an uninterrupted run, the stacked ensemble matches separate runs, and a small
urns model learns to memorize a small pool and to generalize from a large one."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import bayesicl as bic
from bayesicl.cli import main
from bayesicl.errors import BayesiclError
from bayesicl.runs import open_run
from bayesicl.transformers.batches import TrainingBatches
from bayesicl.transformers.ensemble import train_ensemble
from bayesicl.transformers.model import inputs_from_batch
from bayesicl.transformers.presets import load_recipe
from bayesicl.transformers.train import STATE_DIR, checkpoint_steps, load_model, train_run

torch.set_num_threads(1)  # the suite runs two workers on two cores

# BAYESICL_TEST_DEVICE=cuda runs these training tests on a GPU (CI has none: cpu).
DEVICE = os.environ.get("BAYESICL_TEST_DEVICE", "cpu")
TINY = {"width": 16, "mlp_width": 32, "batch_size": 16, "eval_sequences": 12, "checkpoints": 5,
        "learning_rate": 3e-3, "warmup_steps": 10, "device": DEVICE}
FAMILIES = {
    "urns": load_recipe("urns-small", {**TINY, "context_length": 12, "steps": 120}),
    "regression": load_recipe("regression-small", {**TINY, "num_dims": 4, "context_length": 6, "steps": 120}),
    "classification": load_recipe("classification-small", {**TINY, "num_dims": 4, "context_length": 8,
                                                           "steps": 120, "warmup_steps": 0}),
    "markov": load_recipe("markov-small", {**TINY, "num_dims": 2, "context_length": 16, "steps": 120}),
}
DIVERSITY = 4


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One finished run per family (trained once, shared by the tests below)."""
    out = tmp_path_factory.mktemp("runs")
    return {name: train_run(recipe, DIVERSITY, out, progress=False) for name, recipe in FAMILIES.items()}


def storage_ulp(run):
    """Relative spacing of the run's stored outputs: float16 rounding (2^-10) or none."""
    return 2.0 ** -10 if run.meta["dtype"] == "float16" else 0.0


def tree_digest(path):
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_trains_logs_its_checkpoints_and_its_loss_decreases(trained, name):
    recipe = FAMILIES[name]
    run = open_run(trained[name])
    assert run.complete and run.diversity == DIVERSITY
    assert run.steps.tolist() == checkpoint_steps(recipe.steps, recipe.checkpoints) == [20, 37, 59, 87, 120]
    assert run.loss["step"].tolist() == list(range(1, recipe.steps + 1))
    losses = run.loss["loss"].to_numpy()
    assert losses[-20:].mean() < 0.9 * losses[:10].mean()
    assert not (trained[name] / STATE_DIR).exists()
    assert run.config["steps"] == recipe.steps and run.meta["extra"]["preset"] == recipe.name


@pytest.mark.parametrize("name", list(FAMILIES))
def test_saved_model_reproduces_the_last_checkpoint(trained, name):
    run = open_run(trained[name])
    model = load_model(trained[name])
    with torch.no_grad():
        out = model(inputs_from_batch(run.task, run.inputs["ood"])).numpy()
    # stored in the run's precision: equal after the same rounding, up to one ulp of it
    stored = run.outputs.sel(step=run.steps[-1], split="ood").values
    np.testing.assert_allclose(out.astype(stored.dtype), stored, atol=1e-5, rtol=storage_ulp(run))


def test_training_is_deterministic_given_the_seed(trained, tmp_path):
    again = open_run(train_run(FAMILIES["urns"], DIVERSITY, tmp_path, progress=False))
    np.testing.assert_array_equal(again.outputs.values, open_run(trained["urns"]).outputs.values)
    other = open_run(train_run(FAMILIES["urns"].replace(seed=1), DIVERSITY, tmp_path, progress=False))
    assert not np.allclose(other.outputs.values[-1], again.outputs.values[-1])


@pytest.mark.parametrize("name", ["urns", "classification"])
def test_interrupted_then_resumed_run_equals_the_uninterrupted_one(trained, tmp_path, name):
    recipe = FAMILIES[name]
    path = train_run(recipe, DIVERSITY, tmp_path, progress=False, stop_after=40)
    partial = open_run(path)
    assert partial.steps.tolist() == [20, 37, 59] and not partial.complete
    assert (path / STATE_DIR / "resume.safetensors").exists()
    with pytest.raises(BayesiclError, match="already exists; pass --resume"):
        train_run(recipe, DIVERSITY, tmp_path, progress=False)
    train_run(recipe, DIVERSITY, tmp_path, progress=False, resume=True)
    resumed, straight = open_run(path), open_run(trained[name])
    assert resumed.complete and resumed.steps.tolist() == straight.steps.tolist()
    np.testing.assert_allclose(resumed.outputs.values, straight.outputs.values, atol=1e-6)
    np.testing.assert_allclose(resumed.loss["loss"], straight.loss["loss"], rtol=1e-6)


def test_resume_of_a_finished_run_does_nothing_and_a_different_config_is_refused(trained):
    path = trained["regression"]
    before = tree_digest(path)
    assert train_run(FAMILIES["regression"], DIVERSITY, path.parent, progress=False, resume=True) == path
    assert tree_digest(path) == before
    with pytest.raises(BayesiclError, match=r"different config \(fields \['learning_rate'\]\)"):
        train_run(FAMILIES["regression"].replace(learning_rate=1e-2), DIVERSITY, path.parent, resume=True)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_batched_ensemble_matches_separate_runs_after_100_steps(tmp_path, name):
    recipe = FAMILIES[name].replace(steps=100, checkpoints=3)
    if name == "classification":
        # The preset's learning rate: at TINY's 3e-3 without warm-up, a D = 2 classifier
        # amplifies float rounding (of any origin: a batched matmul, another summation order)
        # from 1e-7 to 1e-2 within 100 steps, in separate runs as much as in the ensemble.
        recipe = recipe.replace(learning_rate=1e-3, warmup_steps=10)
    diversities = [2, 16, 128]
    separate = [open_run(train_run(recipe, d, tmp_path / "separate", progress=False)) for d in diversities]
    batched = [open_run(p) for p in train_ensemble(recipe, diversities, tmp_path / "batched", progress=False)]
    for a, b in zip(separate, batched):
        assert a.path.name == b.path.name and a.steps.tolist() == b.steps.tolist() == [20, 52, 100]
        np.testing.assert_allclose(b.outputs.values, a.outputs.values, atol=1e-4, rtol=storage_ulp(a))
        np.testing.assert_allclose(b.loss["loss"], a.loss["loss"], atol=1e-4)
        assert a.settings == b.settings
    # different pools give different members
    assert not np.allclose(batched[0].outputs.values[-1], batched[2].outputs.values[-1], atol=1e-3)


WORKERS_CHECK = """
import numpy as np, bayesicl as bic
from bayesicl.transformers.batches import TrainingBatches
from bayesicl.transformers.presets import load_recipe
recipe = load_recipe("classification-small", {"batch_size": 4, "num_dims": 4, "context_length": 8})
task = bic.task("classification", **recipe.task_params())
pools = [task.pool(d, seed=0) for d in (1, 8)]
with TrainingBatches(task, pools, recipe, first_step=7) as inline, \\
        TrainingBatches(task, pools, recipe, first_step=7, workers=2, ahead=3) as ahead:
    for step in range(7, 15):
        for a, b in zip(inline.take(step), ahead.take(step)):
            np.testing.assert_array_equal(a, b)
    print(type(ahead._executor).__name__)
"""


@pytest.mark.parametrize("start_jax, workers", [(False, "ProcessPoolExecutor"), (True, "ThreadPoolExecutor")],
                         ids=["forked-processes", "threads-once-jax-runs"])
def test_batches_made_by_workers_equal_those_made_in_process(start_jax, workers):
    # Workers are forked processes, or threads once JAX runs threads of its own in the process
    # (forking then could deadlock). A fresh interpreter each, so that the state is known.
    code = ("import jax.numpy as jnp; jnp.ones(1).block_until_ready()\n" if start_jax else "") + WORKERS_CHECK
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == workers


def test_training_batches_must_be_taken_in_step_order():
    recipe = FAMILIES["urns"]
    task = bic.task("urns", **recipe.task_params())
    with TrainingBatches(task, [task.pool(4, seed=0)], recipe, first_step=3) as batches:
        batches.take(3)
        with pytest.raises(BayesiclError, match="asked for step 20, the next one is 4"):
            batches.take(20)


def test_a_run_resumed_with_data_workers_equals_the_uninterrupted_run(trained, tmp_path):
    recipe = FAMILIES["urns"].replace(data_workers=2)
    train_run(recipe, DIVERSITY, tmp_path, progress=False, stop_after=30)
    path = train_run(recipe, DIVERSITY, tmp_path, progress=False, resume=True)
    np.testing.assert_array_equal(open_run(path).outputs.values, open_run(trained["urns"]).outputs.values)


def test_ensemble_resumes_members_interrupted_at_different_steps(trained, tmp_path):
    recipe = FAMILIES["urns"]
    train_run(recipe, DIVERSITY, tmp_path, progress=False, stop_after=20)       # state at step 20
    train_run(recipe, 32, tmp_path, progress=False, stop_after=50)              # state at step 59
    paths = train_ensemble(recipe, [DIVERSITY, 32], tmp_path, progress=False, resume=True)
    np.testing.assert_allclose(open_run(paths[0]).outputs.values, open_run(trained["urns"]).outputs.values,
                               atol=1e-4)
    assert open_run(paths[1]).complete


def test_train_command_writes_one_run_per_diversity_and_fails_in_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["train", "urns", "--diversity", "2", "8", "--out", str(out), "--preset", "urns-small",
            "--steps", "25", "--checkpoints", "2", "--set", "eval_sequences=4", "--set", "width=8",
            "--set", "mlp_width=16", "--set", "context_length=8", "--set", "warmup_steps=5", "--quiet",
            "--batched"]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["urns-d8-T8-D0002-w16-s0", "urns-d8-T8-D0008-w16-s0"]
    assert open_run(out / names[0]).steps.tolist() == [20, 25]
    capsys.readouterr()
    assert main(args + ["--resume", "--set", "learning_rate=0.01"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "different config" in error
    assert main(["train", "regression", "-D", "4", "--out", str(out), "--preset", "urns-small"]) == 1
    assert "is a 'urns' recipe" in capsys.readouterr().err


def test_small_urns_model_memorizes_a_small_pool_and_generalizes_from_a_large_one(tmp_path):
    # Independent M and G (docs/model.md#urns-strategies): posterior over the pool vs the Dirichlet(1) posterior mean.
    recipe = load_recipe("urns-small", {"steps": 1500, "checkpoints": 3, "eval_sequences": 64,
                                        "context_length": 32, "device": DEVICE})
    runs = [open_run(p) for p in train_ensemble(recipe, [4, 1024], tmp_path, progress=False)]
    weights = []
    for run in runs:
        tokens = run.inputs["id"]["tokens"][:, 1:]                                   # (B, T)
        d = run.task.num_dims
        counts = np.zeros((tokens.shape[0], tokens.shape[1], d))                     # counts of x_1..x_t
        counts[:, 1:] = np.cumsum(np.eye(d)[tokens[:, :-1]], axis=1)
        log_post = counts @ np.log(run.pool).T                                       # (B, T, D)
        log_post -= log_post.max(-1, keepdims=True)
        post = np.exp(log_post) / np.exp(log_post).sum(-1, keepdims=True)
        memorizing = post @ run.pool
        generalizing = (counts + 1) / (counts.sum(-1, keepdims=True) + d)
        network = np.exp(run.outputs.sel(step=recipe.steps, split="id").values.astype(np.float64))

        def skl(p, q):
            return float(np.mean(0.5 * ((p - q) * (np.log(p) - np.log(q))).sum(-1)))

        r = (skl(network, generalizing) - skl(network, memorizing)) / skl(memorizing, generalizing)
        weights.append((np.clip(r, -1, 1) + 1) / 2)
    assert weights[0] > 0.6, weights          # D = 4: closer to memorizing
    assert weights[1] < 0.4, weights          # D = 1024: closer to generalizing


def test_ensemble_handles_members_with_different_evaluation_splits(tmp_path):
    # Classification at D = 1 has no in-weights probe (it needs another exemplar).
    recipe = FAMILIES["classification"].replace(steps=25, checkpoints=2)
    runs = [open_run(p) for p in train_ensemble(recipe, [1, 4], tmp_path, progress=False)]
    assert [r.meta["splits"] for r in runs] == [["id", "ood"], ["id", "ood", "iwl"]]
    assert all(r.complete for r in runs)
