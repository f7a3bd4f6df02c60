"""The evidence cache: computed evidence and strategy terms, kept outside the runs' folder.

Location: ``$BAYESICL_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("bayesicl")``.
Nothing is ever written inside a runs directory. An entry's key hashes everything its value
depends on: for evidence, the runs' content hashes, the strategy list, the cutoff, the loss
sample size and the package version; for strategy terms (L̄_s, K_s), the task settings, the
pool's bytes, the strategy, the loss sample size and seed. A run that gains a checkpoint
changes its content hash, so its evidence is recomputed; its L̄ and K are reused.

Evidence entries are directories (`bayesicl.evidence.stored`); terms are small JSON files
(this module). No pickle anywhere. A corrupt entry is treated as a miss.

The cache only saves time: a cache that cannot be written (a full disk, a read-only
folder) gives one `CacheWarning` per cache folder and the work goes on uncached.

>>> import os, tempfile
>>> from unittest import mock
>>> with mock.patch.dict(os.environ, {"BAYESICL_CACHE_DIR": tempfile.mkdtemp()}):
...     store_json("terms", "abc", {"loss": 1.5})
...     load_json("terms", "abc")
{'loss': 1.5}
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from .._version import __version__
from ..atomic import read_regular, write_json
from ..cache_folder import ENV_VAR, cache_dir
from ..errors import BayesiclWarning


class CacheWarning(BayesiclWarning):
    """The evidence cache could not be written; results are recomputed next time."""


_WARNED: set[str] = set()


def warn_cannot_store(where: Path, error: OSError) -> None:
    """One `CacheWarning` per cache folder: writing `where` failed with `error`; work goes on."""
    root = str(cache_dir())
    if root not in _WARNED:     # once per cache folder: the same cause would repeat for every entry
        _WARNED.add(root)
        warnings.warn(f"{where}: cannot write the evidence cache ({error.strerror or error}); continuing "
                      f"without caching (set {ENV_VAR} to a writable folder to keep results)",
                      CacheWarning, stacklevel=3)


def key(*parts: Any) -> str:
    """A stable hex key of JSON-able parts (and the package version).

    >>> key("a", 1) == key("a", 1) != key("a", 2)
    True
    """
    text = json.dumps([__version__, *parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_json(kind: str, entry: str) -> Any | None:
    """The JSON value stored under (kind, entry), or None when absent or unreadable."""
    path = cache_dir() / kind / f"{entry}.json"
    try:
        return json.loads(read_regular(path, 1 << 26))
    except (OSError, ValueError):   # a BayesiclError (not a regular file) is a ValueError
        return None


def store_json(kind: str, entry: str, value: Any) -> None:
    """Atomically store a JSON value under (kind, entry); a failed write only warns."""
    path = cache_dir() / kind / f"{entry}.json"
    try:
        write_json(path, value)
    except OSError as error:
        warn_cannot_store(path, error)
