"""Faults found by fault injection and hostile files: each test reproduces one as it was found
(a process killed at a chosen system call, a full or read-only file system, two concurrent
processes, a crafted file) and states what must happen instead: nothing lost, nothing mixed,
and where the command fails, one line on stderr and exit 1.

The full and read-only file systems are small tmpfs mounts, which need root; elsewhere those
tests are skipped with that reason (a read-only folder by chmod does not stop root)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file, save_file

import bayesicl as bic
from bayesicl.cli import main
from bayesicl.errors import BayesiclError
from bayesicl.inference import folder as fit_folder
from bayesicl.inference import load_fit
from bayesicl.inference.synthetic import mixture_output
from bayesicl.runs import RunWriter, check_runs, open_run
from bayesicl.transformers.presets import load_recipe
from bayesicl.transformers.train import STATE_DIR, STATE_FILE, train_run

torch.set_num_threads(1)  # the suite runs two workers on two cores

ROOT = Path(__file__).resolve().parents[1]
TINY = {"width": 8, "mlp_width": 16, "batch_size": 4, "eval_sequences": 4, "context_length": 8,
        "steps": 60, "checkpoints": 4, "warmup_steps": 5, "data_workers": 0, "device": "cpu"}
RECIPE = load_recipe("urns-small", TINY)                     # checkpoints at 20, 31, 44, 60
TINY_FLAGS = [f"--set={k}={v}" for k, v in TINY.items() if k not in ("steps", "checkpoints")] + [
    "--preset", "urns-small", "--steps", "60", "--checkpoints", "4", "--quiet"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def one_line_error(capsys_or_text, verb: str) -> str:
    """The stderr of a failed command: exactly one line, "bayesicl VERB: error: ...", no traceback."""
    err = capsys_or_text if isinstance(capsys_or_text, str) else capsys_or_text.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(f"bayesicl {verb}: error: "), err   # (progress bars aside)
    assert len(errors[0]) < 2000
    return errors[0]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def write_runs(root: Path, diversities=(2, 4, 8), steps=(10, 100, 1000, 10000)) -> Path:
    """Runs whose outputs are known mixtures of the memorizing and generalizing strategies
    (written through RunWriter, no training: fast)."""
    task = bic.task("urns", num_dims=4, context_length=8)
    for diversity in diversities:
        pool = task.pool(diversity, seed=0)
        inputs = task.eval_sets(pool, seed=0, num_sequences=8)
        m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
        with RunWriter(root / f"D{diversity}", task, pool, inputs) as writer:
            for k, step in enumerate(steps):
                w = (k + 1) / 5 * (1 - diversity / 16)
                writer.log(step, {split: mixture_output(np.log(np.stack([m(b), g(b)])), np.array([w, 1 - w]),
                                                        "log_probs") for split, b in inputs.items()}, loss=1.0)
            writer.finish()
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs") / "runs")


def _fit_result(method: str, alpha: float):
    """A fit result as `fit` returns it, made by hand (a real NUTS fit costs minutes here and
    the faults are in how a result is saved and read back, not in how it is computed)."""
    import arviz as az
    from bayesicl.inference.result import FitResult

    task = bic.task("urns", num_dims=4, context_length=8)
    strategies = ("memorizing", "generalizing")
    diversities = pd.Index([2, 4, 8], name="diversity")
    loss = pd.DataFrame([[0.9, 1.1]] * 3, index=diversities, columns=pd.Index(strategies, name="strategy"))
    complexity = pd.DataFrame([[100.0 * d, 50.0] for d in diversities], index=diversities,
                              columns=pd.Index(strategies, name="strategy"))
    grid = [(d, n, split) for d in diversities for n in (10, 100, 1000) for split in ("id", "ood")]
    conditions = pd.DataFrame(grid, columns=["diversity", "step", "split"])
    conditions["condition"] = np.arange(len(conditions))
    conditions["observed_weight"] = np.linspace(0.1, 0.9, len(conditions))
    params = {"alpha": alpha, "beta": 0.2, "gamma": 0.85}
    idata, draws, sampler = None, None, None
    if method == "nuts":
        rng = np.random.default_rng(0)
        chains, per_chain = 2, 25
        posterior = {k: rng.normal(v, 0.01, (chains, per_chain)) for k, v in params.items()}
        posterior.update(sigma_obs=rng.uniform(0.1, 0.2, (chains, per_chain)),
                         sigma_logit=rng.uniform(0.1, 0.2, (chains, per_chain)))
        idata = az.from_dict(posterior=posterior,
                             posterior_predictive={"w_M": rng.random((chains, per_chain, len(conditions)))},
                             observed_data={"weight": conditions["observed_weight"].to_numpy()})
        draws = {k: v.ravel() for k, v in posterior.items()}
        params = {k: float(draws[k].mean()) for k in params}
        sampler = {"num_chains": chains, "num_samples": per_chain, "num_warmup": per_chain}
    return FitResult(task=task, settings={"task": task.settings, "zipf": None}, strategies=strategies,
                     method=method, variant="full", cutoff_step=0, params=params, conditions=conditions,
                     idata=idata, loss=loss, complexity=complexity, draws=draws,
                     report={"method": method, "params": params}, info={"sampler": sampler},
                     evidence_conditions=conditions.copy())


@pytest.fixture(scope="module")
def fits():
    """A NUTS fit (alpha near 0.496) and a MAP fit (alpha 0.9999) of one setting."""
    return {"nuts": _fit_result("nuts", 0.496), "map": _fit_result("map", 0.9999)}


@pytest.fixture(autouse=True, scope="module")
def evidence_cache(tmp_path_factory):
    """One evidence cache for this module: the runs' evidence is computed once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BAYESICL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", read_only: bool = False, full: bool = False):
    """A small tmpfs at `path` (root only): read-only, or filled so that no byte more fits."""
    if os.geteuid() != 0:
        pytest.skip("a tmpfs mount needs root; a full or read-only file system cannot be made here")
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("mount -t tmpfs failed here (no privilege for mounts in this container)")
    try:
        if full:
            fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 4096):
                    pass
            os.close(fd)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def bayesicl(*args: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from bayesicl.cli import main; sys.exit(main())",
                           *args], capture_output=True, text=True, env=env or ENV, timeout=timeout)


# -- 1. two trainings, one run folder ---------------------------------------------------------------

def run_folder(out: Path) -> Path:
    return out / RECIPE.run_name(4)


def test_a_second_training_into_a_run_that_is_being_trained_is_refused_and_nothing_mixes(uninterrupted, tmp_path):
    # As found: two `bayesicl train` with different learning rates and the same --out.
    out = tmp_path / "cc"
    first = subprocess.Popen([sys.executable, "-c", "import sys; from bayesicl.cli import main; sys.exit(main())",
                              "train", "urns", "-D", "4", *TINY_FLAGS, "--set", f"learning_rate={RECIPE.learning_rate}",
                              "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = run_folder(out) / "writer.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = bayesicl("train", "urns", "-D", "4", *TINY_FLAGS, "--set", "learning_rate=5e-2", "--out", str(out))
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1
    line = one_line_error(second.stderr, "train")
    assert "another process" in line or "already exists" in line
    # The run is the first training alone: its settings, its model, and the checkpoints and
    # losses an uninterrupted run with that learning rate logs.
    run = open_run(run_folder(out))
    assert run.complete and run.config["learning_rate"] == RECIPE.learning_rate != 5e-2
    assert json.loads((run_folder(out) / "model.json").read_text())["recipe"]["learning_rate"] == RECIPE.learning_rate
    np.testing.assert_array_equal(run.outputs.values, uninterrupted.outputs.values)
    pd.testing.assert_frame_equal(run.loss, uninterrupted.loss)
    assert check_runs(out) == []


def _writer(path: Path, lr: float = 1e-3) -> RunWriter:
    task = bic.task("urns", num_dims=4, context_length=8)
    pool = task.pool(4, seed=0)
    return RunWriter(path, task, pool, task.eval_sets(pool, seed=0, num_sequences=4),
                     config={"preset": "tiny", "learning_rate": lr})


def _outputs(seed: int):
    z = np.random.default_rng(seed).standard_normal((4, 8, 4))
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return {"id": log_p, "ood": log_p}


def test_the_run_lock_refuses_a_second_writer_and_dies_with_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        import bayesicl as bic
        from bayesicl.runs import RunWriter
        task = bic.task("urns", num_dims=4, context_length=8)
        pool = task.pool(4, seed=0)
        writer = RunWriter({str(tmp_path / 'run')!r}, task, pool, task.eval_sets(pool, seed=0, num_sequences=4),
                           config={{"preset": "tiny", "learning_rate": 1e-3}})
        print("locked", flush=True)
        time.sleep(600)
        """)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BayesiclError, match=f"being written by another process \\(pid {holder.pid}\\)"):
            _writer(tmp_path / "run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with _writer(tmp_path / "run") as writer:     # the kernel freed the lock with the process
        writer.log(20, _outputs(0), loss=1.0)
    assert open_run(tmp_path / "run").steps.tolist() == [20]


def test_a_run_whose_settings_change_under_its_writer_is_refused_at_the_next_write(tmp_path):
    # A writer the lock cannot see (another NFS client) replaces run.json with its settings.
    writer = _writer(tmp_path / "run")
    writer.log(20, _outputs(0), loss=1.0)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    meta["config"]["learning_rate"] = 5e-2
    (tmp_path / "run" / "run.json").write_text(json.dumps(meta))
    before = tree(tmp_path / "run")
    with pytest.raises(BayesiclError, match=r"settings changed .*learning_rate|fields \['config'\]"):
        writer.log(31, _outputs(1), loss=0.9)
    with pytest.raises(BayesiclError, match="settings changed"):
        writer.finish()
    assert tree(tmp_path / "run") == before


def test_a_sweep_resubmitted_while_the_first_runs_is_refused_in_one_line(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps({"preset": "urns-small", "diversities": [4], "set": TINY}))
    out = tmp_path / "runs"
    job = RECIPE
    from bayesicl.transformers.train import open_training_run

    running = open_training_run(job, 4, out)      # the first sweep, still training this job
    try:
        before = tree(out)
        assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 1
        assert "another process" in one_line_error(capsys, "sweep")
        assert tree(out) == before
    finally:
        running.close()


# -- 2. the fit folder is one unit ------------------------------------------------------------------

def _save_killed(result, folder: Path, kill_at: str) -> None:
    """Save `result` into `folder` in a forked child killed (SIGKILL) at `kill_at`: the 3rd
    file rename inside the new folder, just before the folder swap, or just after it."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real_replace, real_exchange, renames = os.replace, fit_folder._exchange, [0]

            def replace(src, dst):
                renames[0] += 1
                if kill_at == "third file" and renames[0] == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_replace(src, dst)

            def exchange(a, b):
                if kill_at == "before swap":
                    os.kill(os.getpid(), signal.SIGKILL)
                swapped = real_exchange(a, b)
                if kill_at == "after swap":
                    os.kill(os.getpid(), signal.SIGKILL)
                return swapped
            os.replace, fit_folder._exchange = replace, exchange
            result.save(folder)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("kill_at, survivor", [("third file", "nuts"), ("before swap", "nuts"),
                                               ("after swap", "map")])
def test_a_fit_killed_while_saving_over_another_leaves_one_whole_fit(fits, tmp_path, kill_at, survivor):
    # As found: fit NUTS into F, then kill a MAP fit into F between its file writes.
    folder = tmp_path / "F"
    fits["nuts"].save(folder)
    _save_killed(fits["map"], folder, kill_at)
    loaded = load_fit(folder)
    expected = fits[survivor]
    assert loaded.method == survivor and loaded.params == pytest.approx(expected.params)
    assert loaded.summary()["method"] == survivor
    assert (folder / "posterior.nc").exists() == (survivor == "nuts")
    if survivor == "nuts":
        np.testing.assert_allclose(loaded.draws["alpha"], expected.draws["alpha"])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["F"]


def test_a_fit_folder_mixed_by_hand_is_refused_and_a_complete_one_replaces_it_whole(fits, tmp_path):
    nuts, mapped = tmp_path / "nuts", tmp_path / "map"
    fits["nuts"].save(nuts)
    fits["map"].save(mapped)
    (nuts / "summary.json").write_bytes((mapped / "summary.json").read_bytes())
    with pytest.raises(BayesiclError, match="summary.json: differs .* mixed"):
        load_fit(nuts)
    fits["map"].save(nuts)                       # replaced whole: no stale posterior.nc
    assert load_fit(nuts).method == "map" and not (nuts / "posterior.nc").exists()


# -- 3. the evidence cache only costs time ----------------------------------------------------------

EVIDENCE = """
import sys, warnings
from bayesicl.evidence import build_evidence
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    evidence = build_evidence(sys.argv[1], cutoff="all")
print(evidence.num_conditions, *[str(w.message).split(": ", 1)[1][:35] for w in caught], sep="\\n")
"""


def test_a_full_cache_file_system_only_warns_and_the_evidence_is_built(runs, tmp_path):
    # As found: `bayesicl fit` died with a traceback, then a segmentation fault (exit 139).
    # The process exits normally (no crash in HDF5 at exit) and the fit gets its evidence.
    with tmpfs(tmp_path / "cache", size="256k", full=True) as cache:
        done = subprocess.run([sys.executable, "-c", EVIDENCE, str(runs)], capture_output=True, text=True,
                              env={**ENV, "BAYESICL_CACHE_DIR": str(cache)}, timeout=300)
        assert os.listdir(cache) == ["filler"] or not any(Path(cache).rglob("*.nc"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["12", "cannot write the evidence cache (No"], done.stdout


def test_a_read_only_cache_folder_only_warns_and_the_evidence_is_the_same(runs, tmp_path, monkeypatch):
    from bayesicl.evidence import build_evidence
    from bayesicl.evidence.cache import CacheWarning

    monkeypatch.setenv("BAYESICL_CACHE_DIR", str(tmp_path / "writable"))
    cached = build_evidence(runs, cutoff="all")
    with tmpfs(tmp_path / "ro", read_only=True) as cache:
        monkeypatch.setenv("BAYESICL_CACHE_DIR", str(cache / "bayesicl"))
        with pytest.warns(CacheWarning, match="cannot write the evidence cache"):
            uncached = build_evidence(runs, cutoff="all")
    pd.testing.assert_frame_equal(uncached.conditions, cached.conditions)


# -- 4. readers load only what the format names, as large as it declares ---------------------------

def _add_unwritten_variable(file: Path, name: str, values: int, group: str | None = None) -> None:
    """Declare a compressed float64 variable of `values` values that is never written: a few
    bytes on disk, `values` × 8 bytes for a reader that loads it."""
    import h5netcdf

    with h5netcdf.File(file, "a") as handle:
        node = handle if group is None else (handle.groups[group] if group in handle.groups
                                             else handle.create_group(group))
        node.dimensions[f"{name}_dim"] = values
        node.create_variable(name, (f"{name}_dim",), "f8", chunks=(1 << 20,), compression="gzip")


PEAK_MEMORY = """
import sys
from bayesicl.runs import check_runs
problems = check_runs(sys.argv[1])
peak_kib = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(problems), int(peak_kib) // 1024)
"""


def test_a_never_written_2_gib_variable_in_inputs_is_neither_loaded_nor_accepted_blindly(tmp_path):
    # As found: a 27 kB inputs.nc made `bayesicl check` use 2.3 GB.
    write_runs(tmp_path / "runs", diversities=(2,), steps=(10,))
    inputs = tmp_path / "runs" / "D2" / "inputs.nc"
    _add_unwritten_variable(inputs, "junk", 1 << 28)
    assert inputs.stat().st_size < 1 << 20
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(tmp_path / "runs")], capture_output=True,
                          text=True, env=ENV, timeout=120)
    problems, peak_mib = map(int, done.stdout.split())
    assert problems == 0 and peak_mib < 1024, done.stdout + done.stderr   # 2 GiB when the junk is loaded


def test_a_named_variable_larger_than_its_run_declares_is_refused_unread(tmp_path):
    write_runs(tmp_path / "runs", diversities=(2,), steps=(10,))
    run = tmp_path / "runs" / "D2"
    import h5netcdf

    file = run / "checkpoints" / "step-00000010.nc"
    with h5netcdf.File(file, "r") as handle:
        attrs = dict(handle.attrs)
    file.unlink()
    with h5netcdf.File(file, "w") as handle:    # the checkpoint, but 2^16 sequences (never written)
        handle.attrs.update(attrs)
        handle.dimensions.update(split=2, sequence=1 << 16, position=8, token=4)
        handle.create_variable("split", ("split",), data=np.array(["id", "ood"], dtype=object),
                               dtype=h5py.string_dtype())
        handle.create_variable("step", (), data=np.int64(10))
        handle.create_variable("outputs", ("split", "sequence", "position", "token"), "f4",
                               chunks=(1, 1 << 12, 8, 4), compression="gzip")
    with pytest.raises(BayesiclError, match="step-00000010.nc: variable 'outputs' declares 4194304 values"):
        open_run(run)


def test_a_crafted_posterior_is_bounded_by_the_fit_it_belongs_to(fits, tmp_path):
    # As found: a crafted posterior.nc made load_fit and plot use 4.7 GB.
    for group, refused in (("posterior", True), ("junk_group", False)):
        folder = tmp_path / group
        fits["nuts"].save(folder)
        _add_unwritten_variable(folder / "posterior.nc", "junk", 1 << 29, group=group)
        meta = json.loads((folder / "fit.json").read_text())       # re-sign it: crafted, not mixed
        meta["files"] = fit_folder.digests(folder, meta["files"])
        (folder / "fit.json").write_text(json.dumps(meta))
        if refused:
            with pytest.raises(BayesiclError, match="posterior.nc: variable 'junk' declares"):
                load_fit(folder)
        else:
            assert "junk_group" not in load_fit(folder).idata.groups()


# -- 5. non-regular files ---------------------------------------------------------------------------

def test_a_checkpoint_that_is_a_fifo_or_dev_zero_is_refused_without_hanging(tmp_path):
    # As found: `bayesicl check` hung, and grew by 1.4 GB every 3 s on /dev/zero.
    write_runs(tmp_path / "runs", diversities=(2, 4), steps=(10,))
    os.symlink("/dev/zero", tmp_path / "runs" / "D2" / "checkpoints" / "step-00000020.nc")
    os.mkfifo(tmp_path / "runs" / "D4" / "checkpoints" / "step-00000020.nc")
    done = bayesicl("check", str(tmp_path / "runs"), timeout=60)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert "D2/checkpoints/step-00000020.nc: not a regular file (a character device)" in lines[0]
    assert "D4/checkpoints/step-00000020.nc: not a regular file (a FIFO)" in lines[1]


# -- 6. loss.csv across a resume --------------------------------------------------------------------

KILLED_TRAINING = """
import json, os, signal, sys
from bayesicl.transformers.presets import load_recipe
from bayesicl.transformers.train import train_run
target, nth, recipe, out = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
real, seen = os.replace, [0]
def replace(src, dst):   # SIGKILL just before the nth rename onto `target`
    if os.path.basename(dst) == target:
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
train_run(load_recipe("urns-small", recipe), 4, out, progress=False)
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return open_run(train_run(RECIPE, 4, tmp_path_factory.mktemp("uninterrupted"), progress=False))


@pytest.mark.parametrize("target, nth, lose_rows_after", [
    ("step-00000044.nc", 1, None),     # killed between loss.csv and the checkpoint
    (STATE_FILE, 3, 31),               # killed after the checkpoint, before the resume state,
])                                     # with loss.csv as the old writer left it (up to step 31)
def test_a_run_killed_between_its_files_resumes_with_every_loss_row(uninterrupted, tmp_path, target, nth,
                                                                    lose_rows_after):
    # As found: loss.csv permanently lacked steps 21-45 after a kill and --resume.
    done = subprocess.run([sys.executable, "-c", KILLED_TRAINING, target, str(nth), json.dumps(TINY),
                           str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run = run_folder(tmp_path)
    if lose_rows_after is not None:
        loss = pd.read_csv(run / "loss.csv")
        loss[loss["step"] <= lose_rows_after].to_csv(run / "loss.csv", index=False)
    assert main(["train", "urns", "-D", "4", *TINY_FLAGS, "--out", str(tmp_path), "--resume"]) == 0
    resumed = open_run(run)
    assert resumed.complete
    pd.testing.assert_frame_equal(resumed.loss, uninterrupted.loss)
    assert resumed.loss["step"].tolist() == list(range(1, 61))
    np.testing.assert_array_equal(resumed.outputs.values, uninterrupted.outputs.values)


# -- 7. one line, never a traceback -----------------------------------------------------------------

def _edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))


def _set_attr(file: Path, name: str, value) -> None:
    with h5py.File(file, "a") as handle:
        handle.attrs[name] = value


CRAFTED_RUNS = {
    "concentration null": lambda run: _edit_json(run / "run.json", lambda m: m["task"].update(concentration=None)),
    "train_loss not a number": lambda run: _set_attr(run / "checkpoints" / "step-00000010.nc", "train_loss", "abc"),
    "pool_variables not a list": lambda run: _set_attr(run / "inputs.nc", "pool_variables", "7"),
    "step 59.7": lambda run: _rewrite_step(run / "checkpoints" / "step-00000010.nc", 59.7),
    "zipf negative": lambda run: _edit_json(run / "run.json", lambda m: m.update(zipf=-1.0)),
}


def _rewrite_step(file: Path, step) -> None:
    with xr.open_dataset(io.BytesIO(file.read_bytes()), engine="h5netcdf") as dataset:
        dataset = dataset.load()
    file.write_bytes(bytes(dataset.assign_coords(step=step).to_netcdf(engine="h5netcdf")))


@pytest.mark.parametrize("craft", CRAFTED_RUNS)
def test_a_crafted_run_is_one_line_in_check_and_in_fit(tmp_path, capsys, craft):
    runs = write_runs(tmp_path / "runs", diversities=(2, 4), steps=(10, 100))
    CRAFTED_RUNS[craft](runs / "D2")
    assert main(["check", str(runs)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "/D2/" in lines[0] and "Traceback" not in lines[0]
    assert main(["fit", str(runs), "--out", str(tmp_path / "fit"), "--method", "map"]) == 1
    assert "/D2/" in one_line_error(capsys, "fit")


def test_a_cuda_device_that_is_not_there_is_one_line_and_leaves_no_run(tmp_path, capsys):
    assert main(["train", "urns", "-D", "4", *TINY_FLAGS, "--set", "device=cuda:99", "--out", str(tmp_path / "o")]) == 1
    assert "cuda:99" in one_line_error(capsys, "train")
    assert not (tmp_path / "o").exists()


def test_a_sweep_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "sweep.yaml").write_bytes(b"preset: urns-small\ndiversities: [4]\n# \xff\xfe\n")
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "runs")]) == 1
    assert "not UTF-8" in one_line_error(capsys, "sweep")


def test_an_out_that_is_a_file_is_refused_before_the_fit_runs(runs, tmp_path, capsys, monkeypatch):
    import bayesicl.commands.fit as command

    (tmp_path / "file").write_text("mine")
    monkeypatch.setattr(command, "build_evidence", lambda *a, **k: pytest.fail("the fit ran"))
    assert main(["fit", str(runs), "--out", str(tmp_path / "file")]) == 1
    assert "exists and is not a folder" in one_line_error(capsys, "fit")
    assert (tmp_path / "file").read_text() == "mine"


def _sign(folder: Path) -> None:
    _edit_json(folder / "fit.json", lambda m: m.update(files=fit_folder.digests(folder, m["files"])))


CRAFTED_FITS = {
    "fit.json not JSON": lambda f: (f / "fit.json").write_text("{"),
    "fit.json a list": lambda f: (f / "fit.json").write_text("[]"),
    "unknown method": lambda f: _edit_json(f / "fit.json", lambda m: m.update(method="vi")),
    "strategies a string": lambda f: _edit_json(f / "fit.json", lambda m: m.update(strategies="memorizing")),
    "alpha missing": lambda f: _edit_json(f / "fit.json", lambda m: m["params"].pop("alpha")),
    "alpha a string": lambda f: _edit_json(f / "fit.json", lambda m: m["params"].update(alpha="0.5")),
    "cutoff a string": lambda f: _edit_json(f / "fit.json", lambda m: m.update(cutoff_step="x")),
    "task settings wrong": lambda f: _edit_json(f / "fit.json", lambda m: m["task_settings"].update(num_dims=None)),
    "sampler missing": lambda f: _edit_json(f / "fit.json", lambda m: m["info"].pop("sampler")),
    "override malformed": lambda f: _edit_json(f / "fit.json", lambda m: m["info"].update(complexity_override=[1])),
    "loss not numbers": lambda f: ((f / "strategy_loss.csv").write_text("diversity,memorizing,generalizing\n2,a,b\n"),
                                   _sign(f)),
    "loss columns": lambda f: ((f / "strategy_loss.csv").write_text("diversity,x\n2,1.0\n"), _sign(f)),
    "summary not UTF-8": lambda f: ((f / "summary.json").write_bytes(b"\xff{"), _sign(f)),
    "posterior not netCDF": lambda f: ((f / "posterior.nc").write_bytes(b"CDF junk"), _sign(f)),
    "posterior a FIFO": lambda f: ((f / "posterior.nc").unlink(), os.mkfifo(f / "posterior.nc")),
    "conditions missing": lambda f: (f / "conditions.csv").unlink(),
}


@pytest.fixture(scope="module")
def saved_nuts(fits, tmp_path_factory):
    return fits["nuts"].save(tmp_path_factory.mktemp("fit") / "nuts")


@pytest.mark.parametrize("craft", CRAFTED_FITS)
def test_a_crafted_fit_folder_is_one_line_in_load_fit_and_plot(saved_nuts, tmp_path, capsys, craft):
    import shutil

    folder = Path(shutil.copytree(saved_nuts, tmp_path / "fit"))
    CRAFTED_FITS[craft](folder)
    with pytest.raises(BayesiclError) as caught:
        load_fit(folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)
    assert main(["plot", str(folder), "--out", str(tmp_path / "figures")]) == 1
    one_line_error(capsys, "plot")


def _stopped_run(out: Path) -> Path:
    """A run interrupted after its first checkpoint (step 20), with its resume state."""
    return train_run(RECIPE, 4, out, progress=False, stop_after=20)


def test_a_resume_state_with_a_wrong_shaped_tensor_is_one_line(tmp_path, capsys):
    run = _stopped_run(tmp_path)
    state = run / STATE_DIR / STATE_FILE
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(state))
    name = next(k for k in tensors if k.startswith("parameters."))
    tensors[name] = torch.zeros(3, 5)
    save_file(tensors, str(state), metadata=metadata)
    assert main(["train", "urns", "-D", "4", *TINY_FLAGS, "--out", str(tmp_path), "--resume"]) == 1
    assert "has shape (3, 5)" in one_line_error(capsys, "train")
    assert open_run(run).steps.tolist() == [20]


@pytest.mark.parametrize("verb", ["train", "fit"])
@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_a_full_or_read_only_file_system_is_one_line_and_leaves_nothing_partial(runs, fits, tmp_path, capsys,
                                                                                monkeypatch, verb, failure):
    import bayesicl.commands.fit as command

    monkeypatch.setattr(command, "fit", lambda *a, **k: fits["map"])   # its result, without the minutes
    with tmpfs(tmp_path / "fs", size="64k", full=failure == "full", read_only=failure == "read-only") as fs:
        before = tree(fs)
        if verb == "train":
            code = main(["train", "urns", "-D", "4", *TINY_FLAGS, "--out", str(fs / "runs")])
        else:
            code = main(["fit", str(runs), "--out", str(fs / "fit"), "--method", "map", "--all-steps"])
        assert code == 1
        line = one_line_error(capsys, verb)
        assert "No space left on device" in line or "Read-only file system" in line
        after = tree(fs)
        if verb == "fit":
            assert after == before
        else:   # whatever was written is a valid start of the run (or nothing), never a temp file
            assert not [name for name in after if name.split("/")[-1].startswith(".")]


# -- 8. fit never writes into the runs --------------------------------------------------------------

@pytest.mark.parametrize("inside", ["D2/checkpoints", ".", "D2", "new/sub"])
def test_fit_refuses_an_out_in_the_runs_folder_before_fitting(runs, capsys, inside):
    # As found: --out RUNS/<run>/checkpoints wrote posterior.nc there and broke the run.
    before = tree(runs)
    assert main(["fit", str(runs), "--out", str(runs / inside)]) == 1
    assert "never writes into" in one_line_error(capsys, "fit")
    assert tree(runs) == before and check_runs(runs) == []


# -- 9. written files respect the umask -------------------------------------------------------------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_every_written_file_has_the_mode_the_umask_gives(fits, tmp_path, mask, mode):
    # As found: every file was 0600 whatever the umask (unreadable on shared storage).
    old = os.umask(mask)
    try:
        write_runs(tmp_path / "runs", diversities=(2,), steps=(10,))
        fits["nuts"].save(tmp_path / "fit")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(mode)}
    assert oct(stat.S_IMODE((tmp_path / "fit").stat().st_mode)) == oct(mode | 0o111 & ~mask)


# -- 10. a resume state beyond the run --------------------------------------------------------------

def test_a_resume_state_beyond_the_last_step_is_refused(tmp_path, capsys):
    # As found: step = 100000 in a 60-step run's state gave exit 0 and a "complete" run.
    run = _stopped_run(tmp_path)
    state = run / STATE_DIR / STATE_FILE
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as handle:
        metadata = {**handle.metadata(), "step": "100000"}
    save_file(load_file(str(state)), str(state), metadata=metadata)
    assert main(["train", "urns", "-D", "4", *TINY_FLAGS, "--out", str(tmp_path), "--resume"]) == 1
    assert "step 100000" in one_line_error(capsys, "train")
    reopened = open_run(run)
    assert not reopened.complete and reopened.steps.tolist() == [20]


# -- weak points ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["fit"], ["fitt"], ["fit", "runs", "--out", "x", "--chains", "many"],
                                  ["train", "urns"]])
def test_a_usage_error_is_one_line_and_exit_1(capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "error:" in err and "usage:" not in err


def test_check_names_folders_it_skips(tmp_path, capsys):
    runs = write_runs(tmp_path / "runs", diversities=(2,), steps=(10,))
    (runs / "half" / "checkpoints").mkdir(parents=True)
    os.symlink(runs / "D2", tmp_path / "linked")
    (runs / "sub").mkdir()
    os.symlink(runs / "D2", runs / "sub" / "link")
    assert main(["check", str(runs)]) == 1
    err = capsys.readouterr().err
    assert "half: skipped: holds checkpoints/" in err and "link: skipped: a symbolic link" in err


@pytest.mark.parametrize("flags, words", [(["--cutoff-step", "-5"], "--cutoff-step -5"),
                                          (["--prior", "alpha=Beta(inf,2)"], "finite")])
def test_impossible_fit_options_are_refused(runs, tmp_path, capsys, flags, words):
    assert main(["fit", str(runs), "--out", str(tmp_path / "fit"), "--method", "map", *flags]) == 1
    assert words in one_line_error(capsys, "fit")
