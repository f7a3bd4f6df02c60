"""Atomic file writes and guarded reads.

Writes: readers see the old file or the new one, never a partial one, and a new file gets the
permissions the umask gives any other new file (0644 under umask 022), not mkstemp's 0600.
Reads: only regular files (a FIFO would block, /dev/zero never ends), and never more bytes
than the file's size says.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BayesiclError


def umask() -> int:
    """The process's current umask (read without changing it where /proc allows).

    >>> 0 <= umask() <= 0o777
    True
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)   # no /proc: the only portable read is a set-and-restore
    os.umask(current)
    return current


def make_shareable(path: str | os.PathLike, directory: bool = False) -> None:
    """Give `path` (a file or folder made by mkstemp/mkdtemp, owner-only) the mode a plain
    `open`/`mkdir` would have given it: 0666 (0777 for folders) less the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is fsynced, given the umask's
    permissions and renamed onto `path`. On failure (a full disk too) nothing is left behind.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = pathlib.Path(tmp).write_text("done")
    >>> target.read_text(), oct(target.stat().st_mode & 0o777) == oct(0o666 & ~umask())
    ('done', True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            make_shareable(tmp)
            os.replace(tmp, path)
        except OSError as error:
            if error.filename is not None or error.errno is None:
                raise
            # A failed write() names no file; the file being written is what the user needs.
            raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `path`."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write `text` to `path` (UTF-8)."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write `data` as indented JSON (NaN written as null)."""
    write_text(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def read_regular(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file `path` (a symlink to one is fine). A FIFO, device,
    socket or folder, a file larger than `max_bytes`, or a missing or unreadable file is a
    one-line `BayesiclError` naming `path`; FileNotFoundError is kept for a missing file.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a.json").write_text("{}")
    2
    >>> read_regular(folder / "a.json")
    b'{}'
    >>> read_regular("/dev/zero")
    Traceback (most recent call last):
    bayesicl.errors.BayesiclError: /dev/zero: not a regular file (a character device); refusing to read it
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as error:
        raise BayesiclError(f"{path}: unreadable: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BayesiclError(f"{path}: not a regular file ({_kind(info.st_mode)}); refusing to read it")
        if max_bytes is not None and info.st_size > max_bytes:
            raise BayesiclError(f"{path}: {info.st_size} bytes, more than the {max_bytes} "
                                "a file of this kind can hold")
        chunks, left = [], info.st_size
        while left > 0:   # never past the size fstat gave: a growing file is read as it was
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as error:
        raise BayesiclError(f"{path}: unreadable: {error.strerror or error}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value
