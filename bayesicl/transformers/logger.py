"""A checkpoint logger that does not stall training: files are written on a background thread.

Training hands each checkpoint's outputs (NumPy arrays, already on the CPU) and a snapshot of
the resume state (tensors copied to the CPU) to `BackgroundWriter.submit`, and goes on with
the next step while the thread validates, compresses and writes the files (torch, NumPy and
zlib release the GIL for their heavy work). The guarantees of the synchronous writer hold:

- jobs run one at a time in submission order, so a run's checkpoint file is on disk before
  the resume state that names it, and an ensemble's members keep their order;
- every file is written atomically (`bayesicl.runs.RunWriter`, `bayesicl.atomic`), so a
  kill -9 at any moment leaves only complete files, and a resume restarts from the last state
  on disk, whose checkpoint is on disk too (a resumed run equals an uninterrupted one);
- after a failed job nothing more is written (no state may follow a checkpoint that is not
  there), and the error is raised in the training thread at its next `submit`, `flush` or
  `close`, as one `BayesiclError` line naming the file;
- at most `DEPTH` jobs wait, so memory stays bounded when the disk is slower than training.

>>> writer = BackgroundWriter()
>>> done = []
>>> writer.submit("first", lambda: done.append(1)); writer.submit("second", lambda: done.append(2))
>>> writer.close(); done
[1, 2]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from ..errors import BayesiclError

#: Jobs that may wait for the writer thread before `submit` blocks.
DEPTH = 4


class BackgroundWriter:
    """Runs write jobs on one daemon thread, in order; errors surface in the caller's thread."""

    def __init__(self, depth: int = DEPTH):
        self._queue: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
        self._error: BayesiclError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="bayesicl-checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, what: str, job: Callable[[], None]) -> None:
        """Queue `job` (`what` names it in an error); raises the error of an earlier job."""
        self.check()
        if self._closed:
            raise BayesiclError(f"{what}: the checkpoint writer is closed")
        self._queue.put((what, job))

    def check(self) -> None:
        """Raise the error of a failed job, if any."""
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Wait until every queued job is done; raise the error of a failed one."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        """Finish the queued jobs, stop the thread and raise the error of a failed job."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        self.check()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
            return
        try:                        # the training failed already: still finish what is queued,
            self.close()            # but let the training's own error be the one raised
        except BayesiclError:
            pass

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                what, job = item
                if self._error is None:
                    try:
                        job()
                    except BayesiclError as error:
                        self._error = error
                    except BaseException as error:          # noqa: BLE001 - reported to the trainer
                        message = str(error).splitlines()[0] if str(error) else type(error).__name__
                        self._error = BayesiclError(f"{what}: writing failed in the background writer: {message}")
            finally:
                self._queue.task_done()
