"""The fit folder as one unit: checked before a fit, written whole, read back bounded.

A fit folder becomes visible only complete: `FitResult.save` writes every file into a hidden
sibling folder, which is then swapped into place in one rename (Linux `renameat2`
RENAME_EXCHANGE; elsewhere two renames, between which the folder is briefly absent but never
mixed). An existing fit folder is thus replaced whole, never file by file. fit.json lists
the sha256 of every other file, so `load_fit` also refuses a folder mixed by hand.

>>> import tempfile, pathlib
>>> parent = pathlib.Path(tempfile.mkdtemp())
>>> with replaced_folder(parent / "fit") as tmp:
...     _ = (tmp / "fit.json").write_text("{}")
>>> sorted(p.name for p in parent.iterdir()), (parent / "fit" / "fit.json").read_text()
(['fit'], '{}')
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import arviz as az
import h5netcdf
import numpy as np
import xarray as xr
from arviz.data.inference_data import SUPPORTED_GROUPS_ALL

from ..atomic import make_shareable, read_regular
from ..errors import BayesiclError
from ..runs.format import declared_sizes, read_netcdf

#: A file that marks a folder as a fit folder (and may therefore be replaced whole).
MARKER = "fit.json"
#: Text files of a fit folder larger than this are refused unread.
MAX_TEXT_BYTES = 1 << 28
#: The most draws a group of posterior.nc may hold beyond the sampler's chains × draws
#: (the OOD stage of `bayesicl.inference.cut` draws a fixed number).
MAX_STAGE_DRAWS = 10_000


def check_out_folder(out: str | os.PathLike, runs: str | os.PathLike | None = None) -> Path:
    """Refuse, before any work, an `--out` that a fit could not or must not replace: an
    existing file, a non-empty folder that is not a fit folder, a folder inside a run or
    equal to or inside the `runs` folder (the fit never writes into the runs), or a parent
    that cannot be written. Returns `out` as a Path.

    >>> import tempfile, pathlib
    >>> runs = pathlib.Path(tempfile.mkdtemp())
    >>> check_out_folder(runs / "sub", runs)
    Traceback (most recent call last):
    bayesicl.errors.BayesiclError: --out ...: inside the runs folder ...; a fit never writes into the runs, choose a folder outside it
    """
    out = Path(out)
    target = out.resolve()
    if runs is not None:
        source = Path(runs).resolve()
        if target == source or source in target.parents:
            raise BayesiclError(f"--out {out}: inside the runs folder {runs}; a fit never writes into "
                                "the runs, choose a folder outside it")
    for folder in [target, *target.parents]:
        if (folder / "run.json").is_file():
            raise BayesiclError(f"--out {out}: inside the run {folder}; a fit never writes into a run, "
                                "choose a folder outside it")
    if os.path.lexists(out) and not out.is_dir():
        raise BayesiclError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise BayesiclError(f"--out {out}: a non-empty folder that is not a fit folder (no {MARKER}); "
                            "a fit replaces its --out whole, so choose an empty or new folder")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".check", dir=parent)).rmdir()
    except OSError as error:
        raise BayesiclError(f"--out {out}: cannot write into {parent}: {error.strerror or error}") from None
    return out


@contextlib.contextmanager
def replaced_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder beside `target`; on success it takes `target`'s place
    in one swap (an existing `target` is removed whole afterwards). On failure nothing of
    it remains and `target` is untouched."""
    target = Path(target)
    if os.path.lexists(target) and not target.is_dir():
        raise BayesiclError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise BayesiclError(f"{target}: a non-empty folder that is not a fit folder; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        make_shareable(tmp, directory=True)
        yield tmp
        _fsync_folder(tmp)
        if target.exists() and _exchange(tmp, target):
            _remove(tmp)                # tmp now holds the old fit (or the link to it)
        elif target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
        _fsync_folder(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):    # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot swap
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _fsync_folder(folder: Path) -> None:
    for file in [*(p for p in folder.iterdir() if p.is_file()), folder]:
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass                  # some file systems cannot fsync a folder
        finally:
            os.close(fd)


def digests(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """{name: sha256 hex} of the files `names` present in `folder`."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in names if (folder / name).is_file()}


def read_checked(folder: Path, name: str, expected: Mapping[str, str] | None) -> bytes:
    """The bytes of `folder/name` (a regular file), refused unless they match the sha256
    fit.json lists for it (`expected`; None for a folder saved before digests)."""
    data = read_regular(folder / name, None if name.endswith(".nc") else MAX_TEXT_BYTES)
    if expected is not None:
        if name not in expected:
            raise BayesiclError(f"{folder / name}: not listed in {MARKER}; the folder is mixed from two fits")
        if hashlib.sha256(data).hexdigest() != expected[name]:
            raise BayesiclError(f"{folder / name}: differs from the file {MARKER} was written with; "
                                "the folder is mixed from two fits or damaged")
    return data


def read_posterior(path: Path, data: bytes, limit: int) -> Any:
    """posterior.nc as ArviZ InferenceData, loading only ArviZ's groups and refusing any
    variable whose header declares more than `limit` values (chains × draws × rows)."""
    try:
        with h5netcdf.File(io.BytesIO(data), "r") as handle:
            groups = [g for g in handle.groups if g in SUPPORTED_GROUPS_ALL]
    except Exception as error:  # h5py raises many types for a truncated or corrupt file
        raise BayesiclError(f"{path}: not a readable netCDF file: {str(error).splitlines()[0] if str(error) else error}") from None
    if "posterior" not in groups:
        raise BayesiclError(f"{path}: no posterior group")
    loaded: dict[str, xr.Dataset] = {}
    for group in groups:
        names = declared_sizes(path, data, group)
        loaded[group] = read_netcdf(path, data, {name: limit for name in names}, group=group)
    return az.InferenceData(**loaded)


def inference_data_bytes(idata: Any) -> bytes:
    """ArviZ InferenceData as the bytes of its netCDF file (one group per ArviZ group,
    numeric variables zlib-compressed, as `InferenceData.to_netcdf` writes it). Serialized
    in memory, so that a full disk fails as a plain OSError when the bytes are written,
    never inside HDF5."""
    buffer = io.BytesIO()
    for i, group in enumerate(idata.groups()):
        dataset = idata[group]
        encoding = {name: {"zlib": True} for name, variable in dataset.variables.items()
                    if np.issubdtype(variable.dtype, np.number)}
        dataset.to_netcdf(buffer, mode="w" if i == 0 else "a", group=group, engine="h5netcdf",
                          encoding=encoding)
    return buffer.getvalue()
