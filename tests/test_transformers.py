"""Reference transformers: read-in/read-out layouts, causality, initialization, the loss, the
recipes (presets, schedules, checkpoint steps), and the run store from a plain torch loop."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import bayesicl as bic
from bayesicl.errors import BayesiclError
from bayesicl.runs import RunWriter, open_run
from bayesicl.transformers.model import (
    ModelConfig,
    Transformer,
    init_parameters,
    inputs_from_batch,
    targets_from_batch,
)
from bayesicl.transformers.presets import load_recipe
from bayesicl.transformers.stacked import stack_parameters, stacked_loss, stacked_outputs
from bayesicl.transformers.train import checkpoint_steps

torch.set_num_threads(1)  # the suite runs two workers on two cores


def tiny_model(task, seed=0, **arch):
    arch = {"width": 16, "mlp_width": 32, "num_layers": 2, "num_heads": 2, **arch}
    return init_parameters(Transformer(ModelConfig.for_task(task, **arch)), seed).eval()


def test_importing_bayesicl_and_its_command_line_does_not_import_torch():
    code = ("import sys, bayesicl, bayesicl.runs, bayesicl.cli; bayesicl.cli.build_parser(); "
            "import bayesicl.transformers.cli, bayesicl.transformers.presets; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_urns_outputs_are_next_colour_log_probabilities_of_the_prefix():
    task = bic.task("urns", num_dims=5, context_length=12)
    batch = task.sample(task.pool(3, seed=0), 4, seed=1)
    model = tiny_model(task)
    with torch.no_grad():
        out = model(inputs_from_batch(task, batch)).numpy()
    assert out.shape == (4, 12, 5)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)
    # Row t sees the start token and x_1..x_t only: changing x_{t+1} leaves rows ≤ t unchanged.
    changed = {k: v.copy() for k, v in batch.items()}
    changed["tokens"][:, 7] = (changed["tokens"][:, 7] + 1) % 5        # x_7
    with torch.no_grad():
        out2 = model(inputs_from_batch(task, changed)).numpy()
    np.testing.assert_array_equal(out[:, :7], out2[:, :7])
    assert not np.allclose(out[:, 7:], out2[:, 7:])
    # The last token x_T is a target only, never an input.
    changed["tokens"][:, -1] = (changed["tokens"][:, -1] + 1) % 5
    with torch.no_grad():
        np.testing.assert_array_equal(model(inputs_from_batch(task, changed)).numpy(), out2)


def test_urns_log_probs_drop_the_start_token_logit():
    task = bic.task("urns", num_dims=4, context_length=6)
    batch = task.sample(task.pool(2, seed=0), 3, seed=1)
    model = tiny_model(task)
    inputs = inputs_from_batch(task, batch)
    with torch.no_grad():
        logits = model.head(inputs).numpy()                       # (B, T, d+1)
        out = model(inputs).numpy()
    assert logits.shape == (3, 6, 5)
    colours = logits[..., :4]
    expected = colours - np.log(np.exp(colours).sum(-1, keepdims=True))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_regression_tokens_interleave_x_and_y_and_entry_t_ignores_y_t_onwards():
    task = bic.task("regression", num_dims=3, context_length=5)
    batch = task.sample(task.pool(4, seed=0), 2, seed=1)
    tokens = inputs_from_batch(task, batch).numpy()
    assert tokens.shape == (2, 10, 3)
    for t in range(5):
        np.testing.assert_allclose(tokens[:, 2 * t], batch["x"][:, t], rtol=1e-6)
        np.testing.assert_allclose(tokens[:, 2 * t + 1, 0], batch["y"][:, t], rtol=1e-6)
        assert np.all(tokens[:, 2 * t + 1, 1:] == 0)
    model = tiny_model(task)
    changed = {k: v.copy() for k, v in batch.items()}
    changed["y"][:, 2] += 5.0
    with torch.no_grad():
        a = model(inputs_from_batch(task, batch)).numpy()
        b = model(inputs_from_batch(task, changed)).numpy()
    assert a.shape == (2, 5)
    np.testing.assert_array_equal(a[:, :3], b[:, :3])           # entries 0..2 never see y_2
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_classification_tokens_carry_onehot_labels_and_mark_the_query():
    task = bic.task("classification", num_dims=4, context_length=6)
    batch = task.sample(task.pool(8, seed=0), 3, seed=1)
    tokens = inputs_from_batch(task, batch).numpy()
    assert tokens.shape == (3, 6, 4 + 2 + 1)
    np.testing.assert_allclose(tokens[..., :4], batch["x"], rtol=1e-6)
    onehot = np.eye(2)[batch["labels"][:, :-1]]
    np.testing.assert_array_equal(tokens[:, :-1, 4:6], onehot)
    np.testing.assert_array_equal(tokens[:, -1, 4:6], 0)
    np.testing.assert_array_equal(tokens[..., 6], np.tile([0, 0, 0, 0, 0, 1], (3, 1)))
    with torch.no_grad():
        out = tiny_model(task)(inputs_from_batch(task, batch)).numpy()
    assert out.shape == (3, 2)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["urns", "regression", "classification", "markov"])
def test_loss_is_the_family_loss_of_the_outputs(name):
    task = bic.task(name, num_dims=4, context_length=6)
    batch = task.sample(task.pool(4, seed=0), 5, seed=2)
    model = tiny_model(task)
    inputs, targets = inputs_from_batch(task, batch), targets_from_batch(task, batch)
    with torch.no_grad():
        loss = float(model.loss(inputs, targets))
        out = model(inputs).double().numpy()
    if name in ("urns", "markov"):         # next-token cross-entropy over the T rows
        assert out.shape == (5, 6, 4)
        expected = -np.mean(np.take_along_axis(out, batch["tokens"][:, 1:, None].astype(int), -1))
    elif name == "regression":
        expected = np.mean((out - batch["y"]) ** 2)
    else:
        expected = -np.mean(out[np.arange(5), batch["target"]])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_initialization_depends_on_the_seed_only():
    task = bic.task("urns", num_dims=4, context_length=6)
    a, b, c = tiny_model(task, seed=1), tiny_model(task, seed=1), tiny_model(task, seed=2)
    for (name, x), y, z in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(x, y)
        if x.ndim == 2:
            assert not torch.equal(x, z), name
            assert 0.005 < float(x.detach().std()) < 0.03            # N(0, 0.02²), residual projections smaller


def test_parameter_count_matches_the_architecture():
    task = bic.task("urns", num_dims=8, context_length=64)
    model = Transformer(ModelConfig.for_task(task, width=64, mlp_width=256))
    C, M, V, T = 64, 256, 9, 64
    per_block = 2 * 2 * C + (3 * C * C + 3 * C) + (C * C + C) + (C * M + M) + (M * C + C)
    expected = V * C + T * C + per_block + 2 * C + (C * V + V)
    assert model.num_parameters() == expected


def test_checkpoints_are_evenly_spaced_in_square_root_of_step():
    steps = checkpoint_steps(100_000, 100)
    assert len(steps) == 100 and steps[0] == 20 and steps[-1] == 100_000
    assert all(b > a for a, b in zip(steps, steps[1:]))
    roots = np.sqrt(steps)
    ideal = np.linspace(math.sqrt(20), math.sqrt(100_000), 100)
    assert np.max(np.abs(roots - ideal)) < 0.05                        # rounding only
    dense = checkpoint_steps(30, 20)                                   # more checkpoints than steps
    assert dense == sorted(set(dense)) and dense[0] == 20 and dense[-1] == 30


def test_learning_rate_warms_up_then_stays_constant_or_decays():
    recipe = load_recipe("urns", {"warmup_steps": 100, "learning_rate": 1e-3})
    assert recipe.learning_rate_at(1) == pytest.approx(1e-5)
    assert recipe.learning_rate_at(50) == pytest.approx(5e-4)
    assert recipe.learning_rate_at(100) == recipe.learning_rate_at(5000) == pytest.approx(1e-3)
    decay = recipe.replace(schedule="inverse_sqrt")
    assert decay.learning_rate_at(400) == pytest.approx(1e-3 * math.sqrt(100 / 400))
    assert load_recipe("classification").learning_rate_at(1) == pytest.approx(5e-4)   # no warm-up


def test_paper_presets_follow_the_table():
    urns, regression, classification = (load_recipe(n) for n in ("urns", "regression", "classification"))
    assert (urns.model.num_layers, regression.model.num_layers, classification.model.num_layers) == (1, 8, 1)
    assert (urns.batch_size, regression.batch_size, classification.batch_size) == (64, 128, 64)
    for recipe in (urns, regression, classification):
        assert (recipe.model.width, recipe.model.mlp_width, recipe.model.num_heads) == (64, 256, 1)
        assert (recipe.steps, recipe.checkpoints, recipe.eval_sequences) == (100_000, 100, 500)
        assert recipe.learning_rate == 5e-4 and recipe.grad_clip == 1.0 and recipe.weight_decay == 0
    assert (urns.warmup_steps, regression.warmup_steps, classification.warmup_steps) == (5000, 5000, 0)
    for name in ("urns-small", "regression-small", "classification-small"):
        assert load_recipe(name).eval_sequences <= 128


def test_preset_errors_are_one_line_and_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: urns\nnum_dims: 8\ncontext_length: 16\nwidht: 64\n")
    with pytest.raises(BayesiclError, match=r"bad.yaml: unknown field 'widht'") as error:
        load_recipe(bad)
    assert "\n" not in str(error.value)
    bad.write_text("task: urns\nnum_dims: eight\ncontext_length: 16\n")
    with pytest.raises(BayesiclError, match=r"field 'num_dims' must be an integer"):
        load_recipe(bad)
    with pytest.raises(BayesiclError, match=r"--set learning_rate=fast: field 'learning_rate' must be a number"):
        load_recipe("urns-small", ["learning_rate=fast"])
    with pytest.raises(BayesiclError, match="unknown preset 'nope'"):
        load_recipe("nope")
    with pytest.raises(BayesiclError, match="expected key=value"):
        load_recipe("urns-small", ["steps"])


def test_overrides_parse_yaml_scalars_and_presets_are_found_by_path_and_env(tmp_path, monkeypatch):
    recipe = load_recipe("urns-small", ["learning_rate=5e-4", "zipf=1.5", "steps=10"])
    assert (recipe.learning_rate, recipe.zipf, recipe.steps) == (5e-4, 1.5, 10)
    assert load_recipe("urns-small", ["zipf=null"]).zipf is None
    own = tmp_path / "mine.yaml"
    own.write_text("task: regression\nnum_dims: 4\ncontext_length: 8\nlearning_rate: 1e-3\n")
    assert load_recipe(own).learning_rate == 1e-3
    monkeypatch.setenv("BAYESICL_MODELS", str(tmp_path))
    assert load_recipe("mine").name == "mine"


def test_a_store_written_by_a_plain_torch_loop_opens(tmp_path):
    # No bayesicl training code: a per-position table of logits trained by SGD on urn draws.
    task = bic.task("urns", num_dims=3, context_length=5)
    pool = task.pool(2, seed=0)
    evals = task.eval_sets(pool, seed=0, num_sequences=7)
    logits = torch.zeros(5, 3, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)
    writer = RunWriter(tmp_path / "plain", task, pool, evals, seed=0, config={"model": "position table"})
    losses = []
    for step in range(1, 31):
        tokens = torch.as_tensor(task.training_batch(pool, 16, 0, step)["tokens"][:, 1:], dtype=torch.long)
        loss = -logits.log_softmax(-1).expand(16, 5, 3).gather(-1, tokens[..., None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append((step, loss.item()))
        if step in (10, 30):
            table = logits.detach().log_softmax(-1).numpy()
            writer.log(step, {s: np.broadcast_to(table, (7, 5, 3)) for s in ("id", "ood")}, loss=losses)
            losses = []
    writer.finish(wall_time_s=0.1)
    run = open_run(tmp_path / "plain")
    assert run.steps.tolist() == [10, 30] and run.complete
    assert run.loss["step"].tolist() == list(range(1, 31))


@pytest.mark.parametrize("family", ["urns", "regression", "classification", "markov"])
def test_stacked_models_compute_what_each_member_computes_alone(family):
    task = bic.task(family, num_dims=4, context_length=6)
    models = [tiny_model(task, seed) for seed in range(3)]
    with torch.no_grad():                 # members that differ in every parameter, biases too
        for model in models:
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    batches = [task.sample(task.pool(8, seed=0), 5, seed=e) for e in range(3)]
    inputs = torch.stack([inputs_from_batch(task, b) for b in batches])
    targets = torch.stack([targets_from_batch(task, b) for b in batches])
    parameters = stack_parameters([m.state_dict() for m in models])
    with torch.no_grad():
        outputs = stacked_outputs(models[0].config, parameters, inputs)
        losses = stacked_loss(family, outputs, targets)
        for e, model in enumerate(models):
            torch.testing.assert_close(outputs[e], model(inputs[e]), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(losses[e], model.loss(inputs[e], targets[e]), atol=1e-5, rtol=1e-5)
