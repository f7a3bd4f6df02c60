"""Sweeps: the grid of jobs, skipping finished runs, resuming interrupted ones, the batched
engine, and a small sweep on a local Ray instance giving the same runs as the local engine."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from bayesicl.cli import main
from bayesicl.errors import BayesiclError
from bayesicl.runs import open_run, open_runs
from bayesicl.transformers.sweep import sweep, sweep_jobs
from bayesicl.transformers.train import train_run

torch.set_num_threads(1)  # the suite runs two workers on two cores

SMALL = {"steps": 30, "checkpoints": 3, "eval_sequences": 6, "width": 8, "mlp_width": 16,
         "batch_size": 8, "context_length": 8}
CONFIG = {"preset": "urns-small", "diversities": [2, 16], "set": SMALL}


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory):
    """The 2-job sweep trained one job after another (shared by the tests below)."""
    out = tmp_path_factory.mktemp("sweep")
    summary = sweep(CONFIG, out, engine="local", progress=False)
    return out, summary


def test_grid_is_diversities_by_widths_by_lengths_by_seeds():
    jobs = sweep_jobs({**CONFIG, "mlp_widths": [16, 32], "context_lengths": [8], "seeds": [0, 3]})
    names = [job.recipe.run_name(job.diversity) for job in jobs]
    assert len(names) == len(set(names)) == 2 * 2 * 1 * 2
    assert names[:2] == ["urns-d8-T8-D0002-w16-s0", "urns-d8-T8-D0016-w16-s0"]
    assert names[-1] == "urns-d8-T8-D0016-w32-s3"
    assert {job.recipe.steps for job in jobs} == {30}
    assert {job.group for job in jobs} == {(16, 8, 0), (32, 8, 0), (16, 8, 3), (32, 8, 3)}


def test_sweep_config_errors_are_one_line(tmp_path):
    with pytest.raises(BayesiclError, match="unknown field 'diversity'"):
        sweep_jobs({"preset": "urns-small", "diversity": [4]})
    with pytest.raises(BayesiclError, match="diversities must be a non-empty list"):
        sweep_jobs({"preset": "urns-small", "diversities": [0]})
    with pytest.raises(BayesiclError, match="field 'steps' must be an integer"):
        sweep_jobs({"preset": "urns-small", "diversities": [4], "set": {"steps": "many"}})
    with pytest.raises(BayesiclError, match="sweep config not found"):
        sweep_jobs(tmp_path / "missing.yaml")


def test_local_sweep_trains_every_job_then_skips_finished_runs(local_sweep):
    out, summary = local_sweep
    assert (summary["trained"], summary["skipped"]) == (2, 0)
    runs = open_runs(out)
    assert [r.diversity for r in runs] == [2, 16] and all(r.complete for r in runs)
    assert runs[0].settings == runs[1].settings
    again = sweep(CONFIG, out, progress=False)
    assert (again["trained"], again["skipped"]) == (0, 2)


def test_sweep_resumes_an_interrupted_run_and_refuses_a_changed_config(local_sweep, tmp_path):
    out, _ = local_sweep
    job = sweep_jobs(CONFIG)[1]
    train_run(job.recipe, job.diversity, tmp_path, progress=False, stop_after=20)
    summary = sweep(CONFIG, tmp_path, engine="batched", progress=False)
    assert (summary["trained"], summary["skipped"]) == (2, 0)
    for name in ("urns-d8-T8-D0002-w16-s0", "urns-d8-T8-D0016-w16-s0"):
        np.testing.assert_allclose(open_run(tmp_path / name).outputs.values,
                                   open_run(out / name).outputs.values, atol=1e-4)
    with pytest.raises(BayesiclError, match="different config"):
        sweep({**CONFIG, "set": {**SMALL, "learning_rate": 0.01}}, tmp_path, progress=False)


def test_sweep_command_reads_a_yaml_config(local_sweep, tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "diversities": [2]}))
    out, _ = local_sweep
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 0
    assert "0 trained or resumed, 1 already finished" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "nope.yaml"), "--out", str(out)]) == 1
    assert "sweep config not found" in capsys.readouterr().err


def test_two_job_sweep_on_a_local_ray_instance_gives_the_local_runs(local_sweep, tmp_path):
    # In a subprocess (the command line), so that Ray's workers and signal handlers stay out
    # of the test process.
    out, _ = local_sweep
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    command = [sys.executable, "-m", "bayesicl.cli", "sweep", str(config), "--out", str(tmp_path / "ray"),
               "--engine", "ray", "--num-cpus", "2", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 trained or resumed, 0 already finished" in result.stdout
    for name in ("urns-d8-T8-D0002-w16-s0", "urns-d8-T8-D0016-w16-s0"):
        ran, local = open_run(tmp_path / "ray" / name), open_run(out / name)
        assert ran.complete
        np.testing.assert_allclose(ran.outputs.values, local.outputs.values, atol=1e-5)
