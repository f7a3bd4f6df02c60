"""The background checkpoint writer: in order, bounded, and its errors reach the trainer."""

from __future__ import annotations

import errno
import threading

import pytest

from bayesicl.errors import BayesiclError
from bayesicl.runs import format as fmt
from bayesicl.runs import open_run
from bayesicl.transformers import train as train_module
from bayesicl.transformers.checkpoints import load_state
from bayesicl.transformers.logger import BackgroundWriter
from bayesicl.transformers.presets import load_recipe

TINY = {"steps": 40, "checkpoints": 3, "eval_sequences": 4, "width": 8, "mlp_width": 16, "batch_size": 4,
        "context_length": 8}


def test_jobs_run_in_submission_order_off_the_calling_thread():
    seen = []
    with BackgroundWriter(depth=1) as writer:
        for k in range(20):
            writer.submit(f"job {k}", lambda k=k: seen.append((k, threading.current_thread().name)))
    assert [k for k, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"bayesicl-checkpoint-writer"}


def test_a_failed_job_stops_the_writer_and_its_error_is_raised_in_one_line_at_the_next_call():
    ran = []
    writer = BackgroundWriter()

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit("RUN/checkpoints/step-00000020.nc", fail)
    writer.submit("RUN/state/resume.safetensors", lambda: ran.append("state"))
    with pytest.raises(BayesiclError) as error:
        writer.flush()
    assert str(error.value).startswith("RUN/checkpoints/step-00000020.nc: writing failed")
    assert "No space left" in str(error.value) and "\n" not in str(error.value)
    assert ran == []                                  # no state may follow a missing checkpoint
    with pytest.raises(BayesiclError):
        writer.submit("later", lambda: None)
    with pytest.raises(BayesiclError):
        writer.close()


def test_a_write_error_during_training_ends_train_run_with_that_error_and_no_later_state(tmp_path, monkeypatch):
    recipe = load_recipe("urns-small", TINY)
    real = fmt.write_atomic
    written = []

    def failing(path, data):
        if path.name == fmt.checkpoint_name(train_module.checkpoint_steps(40, 3)[1]):
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path.name)
        return real(path, data)

    monkeypatch.setattr(fmt, "write_atomic", failing)
    with pytest.raises(BayesiclError, match="No space left on device") as error:
        train_module.train_run(recipe, 4, tmp_path, progress=False)
    assert "\n" not in str(error.value)
    run = next(tmp_path.iterdir())
    assert open_run(run).steps.tolist() == [20]      # the checkpoint before the failure is complete
    state = load_state(run)
    assert state is not None and state.step == 20    # and the resume state still points at it


def test_training_with_the_background_writer_equals_writing_each_checkpoint_in_place(tmp_path, monkeypatch):
    recipe = load_recipe("urns-small", TINY)
    background = open_run(train_module.train_run(recipe, 4, tmp_path / "background", progress=False))

    class Inline(BackgroundWriter):
        def submit(self, what, job):
            job()

    monkeypatch.setattr(train_module, "BackgroundWriter", Inline)
    inline = open_run(train_module.train_run(recipe, 4, tmp_path / "inline", progress=False))
    assert background.steps.tolist() == inline.steps.tolist()
    assert (background.outputs.values == inline.outputs.values).all()
    assert background.loss.equals(inline.loss)
