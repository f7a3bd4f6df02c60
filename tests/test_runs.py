"""The logged-run store (docs/run-format.md): what a loop writes is what the fit reads, a crash or a bad
file never passes silently, and a run opens without bayesicl."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayesicl as bic
from bayesicl.errors import BayesiclError
from bayesicl.runs import Run, RunWriter, check_runs, open_run, open_runs
from bayesicl.runs.check import check_main

FAMILIES = {
    "urns": dict(num_dims=3, context_length=5),
    "regression": dict(num_dims=2, context_length=4),
    "classification": dict(num_dims=2, context_length=4),
    "markov": dict(num_dims=3, context_length=5),
}
SEQUENCES = 6
STEPS = (20, 45, 80)


def _outputs(task, splits, rng):
    """Random outputs in the family's layout: log-softmax of normal logits, or predictions."""
    shape = {"urns": (SEQUENCES, task.context_length, task.num_dims),
             "markov": (SEQUENCES, task.context_length, task.num_dims),
             "regression": (SEQUENCES, task.context_length),
             "classification": (SEQUENCES, getattr(task, "num_labels", 0))}[task.family]
    out = {}
    for split in splits:
        z = rng.normal(size=shape)
        if task.family == "regression":
            out[split] = z
        else:  # log p = z − log Σ exp z, written out here rather than borrowed from the package
            out[split] = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def _write_run(path, family="urns", diversity=4, seed=0, steps=STEPS, dtype="float32",
               config=None, finish=True):
    task = bic.task(family, **FAMILIES[family])
    pool = task.pool(diversity, seed=seed)
    evals = task.eval_sets(pool, seed=seed, num_sequences=SEQUENCES)
    writer = RunWriter(path, task, pool, evals, seed=seed, dtype=dtype,
                       config=config or {"preset": "tiny", "lr": 5e-4})
    rng = np.random.default_rng(seed + 100)
    logged = {}
    for step in steps:
        logged[step] = _outputs(task, writer.splits, rng)
        writer.log(step, logged[step], loss=1.0 / (1 + step))
    if finish:
        writer.finish(wall_time_s=1.5)
    return task, pool, evals, logged


def _file_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


# -- round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_a_run_reads_back_exactly_what_the_loop_wrote(tmp_path, family):
    task, pool, evals, logged = _write_run(tmp_path / "run", family)
    run = open_run(tmp_path / "run")

    assert isinstance(run, Run) and run.complete and run.diversity == 4 and run.seed == 0
    assert run.task == task and run.config == {"preset": "tiny", "lr": 5e-4}
    assert run.steps.tolist() == list(STEPS)
    splits = list(evals)
    assert list(run.outputs["split"].values) == splits
    for step, outputs in logged.items():
        for split in splits:
            expected = np.asarray(outputs[split], dtype=np.float32)
            np.testing.assert_array_equal(run.outputs.sel(step=step, split=split).values, expected)
    for split in splits:
        assert set(run.inputs[split]) == set(evals[split])
        for key, value in evals[split].items():
            np.testing.assert_array_equal(run.inputs[split][key], value)
    pool_fields = pool if isinstance(pool, tuple) else (pool,)
    run_fields = run.pool if isinstance(run.pool, tuple) else (run.pool,)
    for a, b in zip(pool_fields, run_fields):
        np.testing.assert_array_equal(a, b)
    assert run.loss["step"].tolist() == list(STEPS)
    np.testing.assert_allclose(run.loss["loss"], [1.0 / (1 + s) for s in STEPS], rtol=0, atol=0)
    assert run.dataset()["train_loss"].values.tolist() == [1.0 / (1 + s) for s in STEPS]


def test_float16_runs_store_the_float16_rounding_of_the_outputs(tmp_path):
    _, _, _, logged = _write_run(tmp_path / "run", "urns", dtype="float16")
    run = open_run(tmp_path / "run")
    assert run.outputs.dtype == np.float16
    for step, outputs in logged.items():
        rounded = np.stack([np.float16(outputs[s]) for s in ("id", "ood")])
        np.testing.assert_array_equal(run.outputs.sel(step=step).values, rounded)


def test_content_hash_is_stable_and_tracks_the_checkpoints(tmp_path):
    _write_run(tmp_path / "run", finish=False)
    first = open_run(tmp_path / "run").content_hash
    assert open_run(tmp_path / "run").content_hash == first
    task = bic.task("urns", **FAMILIES["urns"])
    pool = task.pool(4, seed=0)
    writer = RunWriter(tmp_path / "run", task, pool, task.eval_sets(pool, 0, SEQUENCES),
                       seed=0, config={"preset": "tiny", "lr": 5e-4})
    writer.finish(wall_time_s=9.0)                           # volatile: hash unchanged
    assert open_run(tmp_path / "run").content_hash == first
    writer.log(100, _outputs(task, ("id", "ood"), np.random.default_rng(1)))
    assert open_run(tmp_path / "run").content_hash != first


def test_settings_hold_task_and_recipe_but_not_diversity_seed_or_device(tmp_path):
    config = {"preset": "tiny", "lr": 5e-4, "seed": 3, "diversity": 8, "device": "cpu"}
    _write_run(tmp_path / "a", diversity=4, seed=1, config=config)
    _write_run(tmp_path / "b", diversity=8, seed=2, config={**config, "device": "cuda"})
    _write_run(tmp_path / "c", diversity=8, seed=2, config={**config, "lr": 1e-3})
    a, b, c = (open_run(tmp_path / n) for n in "abc")
    assert a.settings == b.settings
    assert a.settings["task"] == bic.task("urns", **FAMILIES["urns"]).settings
    assert a.settings["config"] == {"preset": "tiny", "lr": 5e-4}
    assert c.settings != a.settings


def test_open_runs_finds_nested_runs_sorted_by_diversity_then_seed(tmp_path):
    for diversity, seed, where in [(8, 1, "x/b"), (2, 0, "y"), (8, 0, "x/a/deep"), (2, 1, "z")]:
        _write_run(tmp_path / where, diversity=diversity, seed=seed, steps=(10,))
    runs = open_runs(tmp_path)
    assert [(r.diversity, r.seed) for r in runs] == [(2, 0), (2, 1), (8, 0), (8, 1)]
    assert [r.diversity for r in open_runs(tmp_path / "x" / "b")] == [8]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BayesiclError, match="no runs found"):
        open_runs(tmp_path / "empty")


# -- without bayesicl, without torch ------------------------------------------------------------

def test_a_run_opens_with_plain_xarray_without_importing_bayesicl(tmp_path):
    _, _, evals, logged = _write_run(tmp_path / "run", "urns")
    code = (
        "import sys, json, glob, xarray as xr, pandas as pd\n"
        "run = sys.argv[1]\n"
        "ds = xr.concat([xr.open_dataset(f) for f in sorted(glob.glob(run + '/checkpoints/*.nc'))], 'step')\n"
        "inputs = xr.open_dataset(run + '/inputs.nc')\n"
        "meta = json.load(open(run + '/run.json'))\n"
        "loss = pd.read_csv(run + '/loss.csv')\n"
        "assert not any(m == 'bayesicl' or m.startswith('bayesicl.') for m in sys.modules)\n"
        "print(json.dumps({'steps': ds['step'].values.tolist(), 'dims': list(ds['outputs'].dims),\n"
        "    'outputs': ds['outputs'].values.tolist(), 'tokens': inputs['tokens'].values.tolist(),\n"
        "    'diversity': meta['diversity'], 'loss_steps': loss['step'].tolist()}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["steps"] == list(STEPS) and seen["diversity"] == 4
    assert seen["dims"] == ["step", "split", "sequence", "position", "token"]
    expected = np.stack([np.stack([logged[s][k] for k in ("id", "ood")]) for s in STEPS])
    np.testing.assert_array_equal(np.asarray(seen["outputs"], dtype=np.float32), expected.astype(np.float32))
    np.testing.assert_array_equal(seen["tokens"], np.stack([evals["id"]["tokens"], evals["ood"]["tokens"]]))
    assert seen["loss_steps"] == list(STEPS)


def test_reading_runs_does_not_import_torch(tmp_path):
    _write_run(tmp_path / "run", "regression")
    code = ("import sys; from bayesicl.runs import open_runs; open_runs(sys.argv[1]); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# -- damaged runs -------------------------------------------------------------------------------

def _rewrite_checkpoint(file, change):
    with xr.open_dataset(file, engine="h5netcdf") as ds:
        ds = change(ds.load())
    file.unlink()
    ds.to_netcdf(file, engine="h5netcdf")


def _truncate(run):
    file = run / "checkpoints" / "step-00000045.nc"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    return file


def _corrupt_json(run):
    file = run / "run.json"
    file.write_text(file.read_text()[:40])
    return file


def _nan_output(run):
    file = run / "checkpoints" / "step-00000045.nc"

    def change(ds):
        values = ds["outputs"].values.copy()
        values[1, 2, 3] = np.nan
        return ds.assign(outputs=(ds["outputs"].dims, values))
    _rewrite_checkpoint(file, change)
    return file


def _wrong_shape(run):
    file = run / "checkpoints" / "step-00000080.nc"
    _rewrite_checkpoint(file, lambda ds: ds.isel(sequence=slice(0, 4)))
    return file


def _unknown_version(run):
    file = run / "run.json"
    meta = json.loads(file.read_text())
    meta["version"] = 2
    file.write_text(json.dumps(meta))
    return file


def _missing_inputs(run):
    file = run / "inputs.nc"
    file.unlink()
    return file


def _missing_field(run):
    file = run / "checkpoints" / "step-00000020.nc"
    _rewrite_checkpoint(file, lambda ds: ds.drop_vars("outputs").assign(other=("split", [1, 2])))
    return file


def _settings_mismatch(run):
    file = run / "checkpoints" / "step-00000045.nc"
    _rewrite_checkpoint(file, lambda ds: ds.assign_attrs(diversity=64))
    return file


def _duplicate_step(run):
    file = run / "checkpoints" / "step-45.nc"
    shutil.copy(run / "checkpoints" / "step-00000045.nc", file)
    return file


def _logits_not_log_probs(run):
    file = run / "checkpoints" / "step-00000080.nc"
    _rewrite_checkpoint(file, lambda ds: ds.assign(outputs=ds["outputs"] + 1.0))
    return file


DAMAGE = {
    "truncated checkpoint": (_truncate, "truncated or corrupt"),
    "corrupted run.json": (_corrupt_json, "corrupt JSON"),
    "NaN in outputs": (_nan_output, "NaN"),
    "wrong shape": (_wrong_shape, "shape"),
    "unknown version": (_unknown_version, "unknown version 2"),
    "missing inputs.nc": (_missing_inputs, "missing"),
    "missing field": (_missing_field, "missing field 'outputs'"),
    "settings mismatch": (_settings_mismatch, "settings mismatch"),
    "duplicate step": (_duplicate_step, "duplicate step 45"),
    "logits instead of log-probs": (_logits_not_log_probs, "not log-probabilities"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_fails_with_one_line_naming_the_file(tmp_path, damage):
    run = tmp_path / "run"
    _write_run(run, "urns")
    damage_files, words = DAMAGE[damage]
    bad_file = damage_files(run)
    before = _file_hashes(run)
    with pytest.raises(BayesiclError) as caught:
        open_run(run)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad_file}: "), message
    assert words in message
    with pytest.raises(BayesiclError, match="^" + str(bad_file).replace("\\", "\\\\")):
        open_runs(tmp_path)
    assert _file_hashes(run) == before  # reading never changes a file

    problems = check_runs(tmp_path)
    assert len(problems) == 1 and problems[0] == message


def test_check_runs_lists_every_problem_of_every_run_and_passes_good_runs(tmp_path, capsys):
    _write_run(tmp_path / "good", diversity=2)
    _write_run(tmp_path / "bad", diversity=4)
    bad = tmp_path / "bad"
    files = [_truncate(bad), _wrong_shape(bad), _duplicate_step(bad)]
    _write_run(tmp_path / "noinputs", diversity=8)
    files.append(_missing_inputs(tmp_path / "noinputs"))

    problems = check_runs(tmp_path)
    assert sorted(p.split(": ")[0] for p in problems) == sorted(str(f) for f in files)
    assert all("\n" not in p for p in problems)
    assert check_runs(tmp_path / "good") == []

    assert check_main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == problems
    assert check_main([str(tmp_path / "good")]) == 0
    assert capsys.readouterr().out.strip() == "OK: 1 runs, 3 checkpoints"


def test_bayesicl_check_command_reports_problems_and_exit_code(tmp_path, capsys):
    from bayesicl.cli import main

    _write_run(tmp_path / "run")
    assert main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 1 runs, 3 checkpoints"
    _unknown_version(tmp_path / "run")
    assert main(["check", str(tmp_path)]) == 1
    assert "unknown version 2" in capsys.readouterr().err


# -- writing ----------------------------------------------------------------------------------

def _writer(path, family="urns", diversity=4, seed=0, config=None, **kw):
    task = bic.task(family, **FAMILIES[family])
    pool = task.pool(diversity, seed=seed)
    evals = task.eval_sets(pool, seed=seed, num_sequences=SEQUENCES)
    return task, RunWriter(path, task, pool, evals, seed=seed,
                           config=config or {"preset": "tiny"}, **kw)


BAD_LOGS = {
    "NaN": lambda out: {**out, "id": np.where(np.arange(3) == 1, np.nan, out["id"])},
    "infinity": lambda out: {**out, "ood": np.full_like(out["ood"], -np.inf)},
    "wrong shape": lambda out: {**out, "id": out["id"][:, :-1]},
    "missing split": lambda out: {"id": out["id"]},
    "logits": lambda out: {k: v + 2.0 for k, v in out.items()},
}


@pytest.mark.parametrize("bad", BAD_LOGS)
def test_an_invalid_log_writes_nothing_and_leaves_earlier_files_intact(tmp_path, bad):
    task, writer = _writer(tmp_path / "run")
    rng = np.random.default_rng(0)
    writer.log(20, _outputs(task, writer.splits, rng), loss=0.5)
    before = _file_hashes(tmp_path / "run")
    with pytest.raises(BayesiclError) as caught:
        writer.log(40, BAD_LOGS[bad](_outputs(task, writer.splits, rng)), loss=0.4)
    assert "\n" not in str(caught.value)
    assert "step-00000040.nc" in str(caught.value)
    assert _file_hashes(tmp_path / "run") == before
    assert writer.steps == [20]


def test_a_logged_step_is_never_rewritten_and_a_diverged_loss_is_refused(tmp_path):
    task, writer = _writer(tmp_path / "run")
    rng = np.random.default_rng(0)
    writer.log(20, _outputs(task, writer.splits, rng))
    before = _file_hashes(tmp_path / "run")
    with pytest.raises(BayesiclError, match="already logged"):
        writer.log(20, _outputs(task, writer.splits, rng))
    with pytest.raises(BayesiclError, match="diverged"):
        writer.log(40, _outputs(task, writer.splits, rng), loss=float("nan"))
    assert _file_hashes(tmp_path / "run") == before


def test_a_float16_run_refuses_outputs_that_overflow_half_precision(tmp_path):
    task, writer = _writer(tmp_path / "run", family="regression", dtype="float16")
    outputs = {s: np.full((SEQUENCES, task.context_length), 1e6) for s in writer.splits}
    with pytest.raises(BayesiclError, match="float16"):
        writer.log(20, outputs)


def test_reopening_with_the_same_settings_resumes_the_run(tmp_path):
    task, writer = _writer(tmp_path / "run")
    rng = np.random.default_rng(0)
    first = _outputs(task, writer.splits, rng)
    writer.log(20, first, loss=[(10, 2.0), (20, 1.5)])
    writer.close()   # the loop crashed: its lock is gone with it
    # the crashed loop restarts: same task, pool, eval sets and recipe; another device
    task, again = _writer(tmp_path / "run", config={"preset": "tiny", "device": "cuda"})
    assert again.steps == [20]
    again.log(40, _outputs(task, again.splits, rng), loss=[(30, 1.2), (40, 1.0)])
    again.finish()
    run = open_run(tmp_path / "run")
    assert run.steps.tolist() == [20, 40] and run.complete
    assert run.loss["step"].tolist() == [10, 20, 30, 40]
    assert run.loss["loss"].tolist() == [2.0, 1.5, 1.2, 1.0]
    np.testing.assert_array_equal(run.outputs.sel(step=20, split="id"), first["id"].astype(np.float32))


@pytest.mark.parametrize("change", [
    dict(seed=1), dict(diversity=8), dict(config={"preset": "other"}), dict(dtype="float16"),
    dict(family="regression"),
])
def test_reopening_with_different_settings_is_refused(tmp_path, change):
    task, writer = _writer(tmp_path / "run")
    writer.log(20, _outputs(task, writer.splits, np.random.default_rng(0)))
    writer.close()
    before = _file_hashes(tmp_path / "run")
    with pytest.raises(BayesiclError, match="use another directory"):
        _writer(tmp_path / "run", **change)
    assert _file_hashes(tmp_path / "run") == before


def test_different_evaluation_inputs_are_refused_on_reopen(tmp_path):
    task, writer = _writer(tmp_path / "run")
    pool = task.pool(4, seed=0)
    other = task.eval_sets(pool, seed=5, num_sequences=SEQUENCES)
    writer.close()
    with pytest.raises(BayesiclError, match="inputs.nc: variable 'tokens' differs"):
        RunWriter(tmp_path / "run", task, pool, other, seed=0, config={"preset": "tiny"})


def test_no_temporary_files_are_left_behind(tmp_path):
    _write_run(tmp_path / "run", "classification")
    names = sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert names == ["inputs.nc", "loss.csv", "run.json",
                     "step-00000020.nc", "step-00000045.nc", "step-00000080.nc", "writer.lock"]


def test_a_crash_mid_write_leaves_the_run_readable(tmp_path, monkeypatch):
    task, writer = _writer(tmp_path / "run")
    rng = np.random.default_rng(0)
    writer.log(20, _outputs(task, writer.splits, rng))

    def crash(src, dst):
        raise KeyboardInterrupt  # the process dies after the temp file was written
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.log(40, _outputs(task, writer.splits, rng))
    monkeypatch.undo()
    assert open_run(tmp_path / "run").steps.tolist() == [20]
    assert check_runs(tmp_path) == []


# -- a loop that is not bayesicl's -----------------------------------------------------------

def test_a_plain_numpy_training_loop_writes_a_run_that_open_runs_accepts(tmp_path):
    # A "model" fitted by plain gradient descent on next-token cross-entropy: one logit vector
    # shared by all positions (a unigram model), trained on batches from the task.
    task = bic.task("urns", num_dims=4, context_length=8)
    evals = {}
    for diversity in (2, 8):
        pool = task.pool(diversity, seed=0)
        evals = task.eval_sets(pool, seed=0, num_sequences=10)
        writer = RunWriter(tmp_path / f"D{diversity}", task, pool, evals, seed=0,
                           config={"model": "unigram", "lr": 0.5, "steps": 30})
        logits = np.zeros(task.num_dims)
        for step in range(1, 31):
            tokens = task.training_batch(pool, 16, seed=0, step=step)["tokens"][:, 1:]
            counts = np.bincount(tokens.ravel(), minlength=task.num_dims) / tokens.size
            probs = np.exp(logits) / np.exp(logits).sum()
            loss = -(counts * np.log(probs)).sum()
            logits -= 0.5 * (probs - counts)           # gradient of the cross-entropy
            if step % 10 == 0:
                log_probs = logits - np.log(np.exp(logits).sum())
                out = np.broadcast_to(log_probs, (10, task.context_length, task.num_dims))
                writer.log(step, {"id": out, "ood": out}, loss=loss)
        writer.finish(wall_time_s=0.1)
    runs = open_runs(tmp_path)
    assert [r.diversity for r in runs] == [2, 8]
    assert runs[0].steps.tolist() == [10, 20, 30]
    final = runs[1].outputs.sel(step=30, split="id").values[0, 0].astype(np.float64)
    assert abs(np.exp(final).sum() - 1) < 1e-6


def test_the_whole_run_is_one_dataset_that_saves_as_netcdf(tmp_path):
    _, _, evals, logged = _write_run(tmp_path / "run", "classification")
    dataset = open_run(tmp_path / "run").dataset()
    dataset.to_netcdf(tmp_path / "whole.nc", engine="h5netcdf")
    again = xr.open_dataset(tmp_path / "whole.nc", engine="h5netcdf").load()
    assert json.loads(again.attrs["splits"]) == ["id", "ood", "iwl"]
    np.testing.assert_array_equal(again["target"].sel(split="iwl"), evals["iwl"]["target"])
    np.testing.assert_array_equal(again["outputs"].sel(step=45, split="ood"),
                                  logged[45]["ood"].astype(np.float32))
    assert again["loss"].values.tolist() == [1.0 / (1 + s) for s in STEPS]


def test_tensor_like_outputs_are_accepted_without_importing_torch(tmp_path):
    class Tensor:  # the duck-typed surface of a torch tensor on an accelerator
        def __init__(self, value):
            self.value = value

        def detach(self):
            return self

        def cpu(self):
            return self

        def double(self):
            return self

        def numpy(self):
            return np.asarray(self.value)

    task, writer = _writer(tmp_path / "run")
    outputs = _outputs(task, writer.splits, np.random.default_rng(0))
    writer.log(20, {k: Tensor(v) for k, v in outputs.items()}, loss=Tensor(0.25))
    run = open_run(tmp_path / "run")
    np.testing.assert_array_equal(run.outputs.sel(step=20, split="id"), outputs["id"].astype(np.float32))
    assert run.loss["loss"].tolist() == [0.25]


# -- the documentation's examples run as written -------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "run-format.md"


def _doc_block(heading):
    """The first ```python block after the `heading` line of docs/run-format.md."""
    text = DOC.read_text()
    after = text[text.index(heading):]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_plain_xarray_recipe_reads_a_run_without_bayesicl(tmp_path):
    _, _, _, logged = _write_run(tmp_path / "run", "urns")
    code = _doc_block("## Reading a run without bayesicl")
    code = code.replace('run = "RUN"', f"run = {str(tmp_path / 'run')!r}")
    code += ("\nimport sys\nassert not any(m.startswith('bayesicl') for m in sys.modules)\n"
             "print(json.dumps(outputs['outputs'].sel(split='ood').isel(step=-1).values.tolist()))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.asarray(json.loads(result.stdout), dtype=np.float32),
                                  logged[STEPS[-1]]["ood"].astype(np.float32))


def test_the_documented_jax_training_loop_writes_a_valid_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_doc_block("## Writing a run from your own training loop"), str(DOC), "exec"), {})
    run = open_runs(tmp_path)[0]
    assert run.diversity == 16 and run.complete and run.config["model"] == "bigram"
    assert run.loss["loss"].iloc[-1] < run.loss["loss"].iloc[0]   # the loop did learn
