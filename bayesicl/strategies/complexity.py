"""Strategy complexity K_s(D) in bits (docs/model.md#complexity): K_s = K_code(s) + K_data(s, D).

Both terms are compressed sizes, an upper bound on description length:

- K_code(s) — the canonical reference source of the strategy's Bayes rule
  (`bayesicl/strategies/canonical/{family}_{kind}.py`, frozen and independent of the optimized
  JAX code) normalized by `normalized_source` (ast parse, docstrings dropped, unparse,
  tokenize, comment and layout tokens dropped, every whitespace character removed) and
  compressed. The values are stored in `canonical/kcode.json` with a sha256 of each normalized
  source; `python -m bayesicl.strategies.canonical` regenerates them.
- K_data(s, D) — the strategy's prior parameters, `prior_parameters`, serialized as
  little-endian float64 in C order and compressed: M the pool (urns (D, d); regression (D, d);
  classification (D, d + 1), the labels as the last column), G the prior's parameters (urns the
  d concentrations; regression (0, 1, σ²); classification (0, 1/d, ε)), C the prediction it
  always makes (urns the d probabilities 1/d; regression the one number 0; classification the
  L label probabilities 1/L).
- Each family states its K_data in the `prior_parameters` of its spec (`bayesicl.families`,
  in the family's strategy module). Strategies of user-registered families
  (`bayesicl.strategies.register`) are measured the same way from the source and the prior
  parameters they were registered with.

Compressed size = 8 × the fewest bytes among lzma (preset 9 | extreme), bz2 (level 9), zlib
(level 9), zstd (level 22, single-threaded) and the raw bytes.

`paper_compatible=True` reproduces the K of the paper's code (Wurgaft et al. 2025,
`compression_utils.py` and the strategies' `prior` attributes) instead, so that α, β, γ can
be compared with the paper's: the compressors are raw, lzma, bz2, brotli (quality 11) and
zstd (22), no zlib, plus for K_data "delta + brotli" (brotli of `np.diff(a,
prepend=a.flat[0])`, the element-to-element differences along the last axis); the prior
parameters are stored as the paper's strategies hold them: urns M the float64 pool, G and C
the int64 Dirichlet pseudo-counts; regression M the pool as float32, G and C the int64
prior (mean, variance) = (0, 1); classification M the float64 pool with labels, G and C
(mean, variance) = (0, 1/d) as float64. K_code is the paper's for the strategies whose
class source the paper measured (the spec's `paper_code_bits`: urns M 4 784 bits, G 4 328 bits) and
otherwise the canonical source compressed with the paper's text compressors (brotli in
text mode). Under it, for urns with d = 8, K_G = 4 416 bits and K_M(4) = 6 832 bits, the
paper's values. α, β, γ fitted under one convention are not comparable with the other's.

>>> import bayesicl as bic
>>> task = bic.task("urns", num_dims=8, context_length=16)
>>> m = bic.strategies.memorizing(task, task.pool(64, seed=1))
>>> g = bic.strategies.generalizing(task)
>>> complexity(m) > complexity(g)
True
>>> complexity(g) == code_length("urns", "generalizing") + data_length(g)
True
"""

from __future__ import annotations

import ast
import bz2
import hashlib
import io
import json
import lzma
import re
import sys
import tokenize
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import zstandard

from ..errors import BayesiclError
from ..families import FAMILIES, KINDS, family_spec

#: The frozen canonical sources and the stored K_code values.
CANONICAL_DIR = Path(__file__).with_name("canonical")
KCODE_PATH = CANONICAL_DIR / "kcode.json"

#: The compressors of docs/model.md#complexity, bytes → compressed bytes; the raw size is always a candidate too.
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "lzma": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
    "bz2": lambda data: bz2.compress(data, compresslevel=9),
    "zlib": lambda data: zlib.compress(data, 9),
    "zstd": lambda data: zstandard.ZstdCompressor(level=22, threads=0).compress(data),
}

#: Token types that carry layout, not content (ENCODING appears only for byte input).
_LAYOUT_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                  tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}


def compressors(*, paper_compatible: bool = False, text: bool = False) -> dict[str, Callable[[bytes], bytes]]:
    """The compressors K is minimized over: those of docs/model.md#complexity, or the paper's.

    The paper's are lzma, bz2, brotli (quality 11; text mode for source code, `text=True`,
    generic mode for arrays) and zstd (22), without zlib.

    >>> sorted(compressors()), sorted(compressors(paper_compatible=True))
    (['bz2', 'lzma', 'zlib', 'zstd'], ['brotli', 'bz2', 'lzma', 'zstd'])
    """
    chosen = dict(COMPRESSORS)
    if paper_compatible:
        del chosen["zlib"]
        chosen["brotli"] = lambda data: _brotli(data, text)
    return chosen


def compressed_bits(data: bytes, *, paper_compatible: bool = False, text: bool = False) -> float:
    """Compressed size of `data` in bits: 8 × min(raw bytes, each compressor's output bytes).

    >>> compressed_bits(b"")
    0.0
    >>> compressed_bits(bytes(4096)) < 8 * 4096
    True
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BayesiclError(f"compressed_bits() takes bytes, got {type(data).__name__}")
    data = bytes(data)
    sizes = [len(data)] + [len(compress(data)) for compress in
                           compressors(paper_compatible=paper_compatible, text=text).values()]
    return 8.0 * min(sizes)


def array_bits(array: np.ndarray, *, paper_compatible: bool = False) -> float:
    """Compressed size in bits of an array's C-order bytes; the paper's convention also tries
    delta + brotli, brotli of the differences ``np.diff(array, prepend=array.flat[0])``.

    >>> array_bits(np.arange(64, dtype="<i8")) > array_bits(np.arange(64, dtype="<i8"), paper_compatible=True)
    True
    """
    array = np.ascontiguousarray(array)
    bits = compressed_bits(array.tobytes(order="C"), paper_compatible=paper_compatible)
    if paper_compatible and array.size and array.dtype.kind in "iufc":
        delta = np.diff(array, prepend=array.flat[0])
        bits = min(bits, 8.0 * len(_brotli(np.ascontiguousarray(delta).tobytes(order="C"), False)))
    return bits


def _brotli(data: bytes, text: bool) -> bytes:
    try:
        import brotli
    except ImportError:
        raise BayesiclError("the paper's K convention needs the brotli package: pip install brotli") from None
    return brotli.compress(data, quality=11, mode=brotli.MODE_TEXT if text else brotli.MODE_GENERIC)


# -- K_code ------------------------------------------------------------------------------------

def normalized_source(source: str) -> str:
    """The source text K_code compresses: no docstrings, comments, layout or whitespace.

    Parse with `ast`, drop module/class/function docstrings, `ast.unparse`, tokenize, drop
    COMMENT/NL/NEWLINE/INDENT/DEDENT/ENCODING/ENDMARKER tokens, join the token strings and
    remove every whitespace character (docs/model.md#complexity).

    >>> normalized_source('def f(x):\\n    "Doc."\\n    return x + 1  # why\\n')
    'deff(x):returnx+1'
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise BayesiclError(f"canonical source does not parse: {error.msg} (line {error.lineno})") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                # A body must not become empty: a docstring-only function keeps a `pass`.
                node.body = body[1:] or [ast.Pass()]
    tokens = tokenize.generate_tokens(io.StringIO(ast.unparse(tree)).readline)
    text = "".join(token.string for token in tokens if token.type not in _LAYOUT_TOKENS)
    return re.sub(r"\s", "", text)


def canonical_sources() -> dict[tuple[str, str], Path]:
    """The canonical source of each (family, kind): canonical/{family}_{kind}.py."""
    found = {}
    for path in sorted(CANONICAL_DIR.glob("*_*.py")):
        family, _, kind = path.stem.rpartition("_")
        if family and not path.stem.startswith("_"):
            found[(family, kind)] = path
    return found


def measure_code_lengths() -> dict[str, Any]:
    """Compute K_code for every canonical source: the content of kcode.json.

    Returns {"python", "compressors", "paper_compatible_compressors", "strategies":
    {family: {kind: {"source", "sha256", "normalized_bytes", "bits", "paper_compatible_bits"}}}}
    where sha256 is of the normalized source (UTF-8) and paper_compatible_bits uses the
    paper's text compressors (a spec's `paper_code_bits` replaces it where the paper measured K_code).
    """
    strategies: dict[str, dict[str, Any]] = {}
    for (family, kind), path in canonical_sources().items():
        code = normalized_source(path.read_text(encoding="utf-8")).encode("utf-8")
        strategies.setdefault(family, {})[kind] = {
            "source": path.name,
            "sha256": hashlib.sha256(code).hexdigest(),
            "normalized_bytes": len(code),
            "bits": compressed_bits(code),
            "paper_compatible_bits": compressed_bits(code, paper_compatible=True, text=True),
        }
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "compressors": ["raw", *compressors()],
        "paper_compatible_compressors": ["raw", *compressors(paper_compatible=True)],
        "strategies": strategies,
    }


def source_length(source: str, *, paper_compatible: bool = False) -> float:
    """K_code of a canonical source text in bits: `compressed_bits` of `normalized_source`.

    This is how every stored value in kcode.json was measured, and how the sources of
    registered strategies are (`paper_compatible`: with the paper's text compressors).

    >>> source_length("def predict(d):\\n    return [1 / d] * d  # uniform\\n")   # 27 bytes, raw
    216.0
    """
    return compressed_bits(normalized_source(source).encode("utf-8"), paper_compatible=paper_compatible,
                           text=paper_compatible)


def code_length(family: str, kind: str, *, paper_compatible: bool = False) -> float:
    """K_code(s) in bits, as stored in canonical/kcode.json for (family, kind).

    A strategy plugged in with `bayesicl.strategies.register` is measured from the source
    it was registered with (`source_length`). With `paper_compatible`, the paper's own value
    where it measured one (the family spec's `paper_code_bits`).

    >>> code_length("urns", "memorizing") > 0, code_length("urns", "memorizing", paper_compatible=True)
    (True, 4784.0)
    """
    spec = FAMILIES.get(str(family))
    if paper_compatible and spec is not None and str(kind) in spec.paper_code_bits:
        return float(spec.paper_code_bits[str(kind)])
    registered = None if spec is None else spec.strategies.get(str(kind))
    if registered is not None:
        if registered.source is None:
            raise BayesiclError(f"strategy {family}/{kind} was registered without a canonical "
                                "source; pass source= to bayesicl.strategies.register for K_code")
        return source_length(registered.source, paper_compatible=paper_compatible)
    try:
        stored = json.loads(KCODE_PATH.read_text(encoding="utf-8"))["strategies"]
    except (OSError, ValueError, KeyError) as error:
        raise BayesiclError(f"{KCODE_PATH}: cannot read the stored K_code values ({error}); "
                            "run `python -m bayesicl.strategies.canonical`") from None
    entry = stored.get(str(family), {}).get(str(kind))
    if entry is None:
        known = ", ".join(f"{f}/{k}" for f in sorted(stored) for k in sorted(stored[f]))
        raise BayesiclError(f"no canonical source for strategy {family}/{kind}; known: {known}")
    return float(entry["paper_compatible_bits" if paper_compatible else "bits"])


# -- K_data ------------------------------------------------------------------------------------

def prior_parameters(strategy: Any, *, paper_compatible: bool = False) -> np.ndarray:
    """The array whose bytes K_data compresses (module docstring; the paper's dtypes if
    `paper_compatible`).

    Reads only `strategy.kind`, `strategy.task` and, for M, `strategy.pool` (and the prior
    weights `strategy.probabilities` if set: a weighted M prior appends them as a column). A
    registered strategy's are its `parameters(task, pool)` (for M by default the pool), as
    float64 even under paper_compatible.

    >>> import bayesicl as bic
    >>> prior_parameters(bic.strategies.generalizing(bic.task("regression", num_dims=8))).tolist()
    [0.0, 1.0, 0.03125]
    """
    kind, task = _described(strategy)
    spec = family_spec(task)
    registered = spec.strategies.get(kind)
    if registered is not None:
        return _registered_parameters(registered, task, getattr(strategy, "pool", None))
    if spec.prior_parameters is None:
        raise BayesiclError(f"no K_data definition for the {task.family} {kind} strategy")
    pool = task.validate_pool(strategy.pool) if kind == "memorizing" else None
    return spec.prior_parameters(kind, task, pool, getattr(strategy, "probabilities", None),
                                 getattr(strategy, "order", None), paper_compatible=paper_compatible)


def weighted_pool(table: Any, probabilities: Any) -> np.ndarray:
    """The memorizing prior as K_data stores it: the pool's rows, with the prior weights as a
    last column when the prior is weighted; float64, C order.

    >>> weighted_pool(np.eye(2), [0.25, 0.75]).tolist()
    [[1.0, 0.0, 0.25], [0.0, 1.0, 0.75]]
    """
    if probabilities is not None:
        table = np.column_stack([table, np.asarray(probabilities, dtype=np.float64)])
    return np.ascontiguousarray(table, dtype="<f8")


def data_length(strategy: Any, *, paper_compatible: bool = False) -> float:
    """K_data(s, D) in bits: the compressed C-order bytes of `prior_parameters(strategy)`.

    >>> import bayesicl as bic
    >>> task = bic.task("urns", num_dims=8, context_length=16)
    >>> data_length(bic.strategies.memorizing(task, task.pool(4, seed=1)))   # 4·8 float64, raw
    2048.0
    """
    return array_bits(prior_parameters(strategy, paper_compatible=paper_compatible),
                      paper_compatible=paper_compatible)


def complexity(strategy: Any, *, paper_compatible: bool = False) -> float:
    """K_s = K_code(s) + K_data(s, D) in bits (docs/model.md#complexity).

    >>> import bayesicl as bic
    >>> c = bic.strategies.constant(bic.task("regression", num_dims=8))
    >>> complexity(c) == code_length("regression", "constant") + 64   # one float64, raw
    True
    """
    kind, task = _described(strategy)
    rule = getattr(strategy, "rule", kind)           # the kind with its order, e.g. markov M2
    return (code_length(task.family, rule, paper_compatible=paper_compatible)
            + data_length(strategy, paper_compatible=paper_compatible))


class _Described(NamedTuple):
    """What complexity reads from a strategy; lets `complexity_table` skip building one."""

    kind: str
    task: Any
    pool: Any = None
    probabilities: Any = None


def complexity_table(task: Any, diversities: Iterable[int], seed: Any,
                     kinds: Sequence[str] = ("memorizing", "generalizing"), *,
                     paper_compatible: bool = False) -> pd.DataFrame:
    """K_s(D) in bits for each D in `diversities`, pools from `task.pool(D, seed)`.

    Returns a DataFrame indexed by `diversity` with one column per kind.

    >>> import bayesicl as bic
    >>> table = complexity_table(bic.task("urns", num_dims=8), [4, 8], seed=1)
    >>> list(table.columns), bool(table["memorizing"].is_monotonic_increasing)
    (['memorizing', 'generalizing'], True)
    """
    diversities = [int(d) for d in diversities]
    if not diversities:
        raise BayesiclError("complexity_table() needs at least one diversity D")
    rows = []
    for diversity in diversities:
        pool = task.pool(diversity, seed) if "memorizing" in kinds else None
        rows.append([complexity(_Described(kind, task, pool if kind == "memorizing" else None),
                                paper_compatible=paper_compatible) for kind in kinds])
    return pd.DataFrame(rows, index=pd.Index(diversities, name="diversity"), columns=list(kinds))


def _registered_parameters(registered, task: Any, pool: Any) -> np.ndarray:
    if registered.parameters is not None:
        values = registered.parameters(task, pool)
    elif registered.kind == "memorizing":
        values = task.validate_pool(pool)
    else:
        raise BayesiclError(f"strategy {registered.family}/{registered.kind} was registered without "
                            "parameters=; K_data needs its prior parameters")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BayesiclError(f"prior parameters of {registered.family}/{registered.kind} are not an "
                            "array of numbers; pass parameters= to bayesicl.strategies.register") from None
    if not np.all(np.isfinite(array)):
        raise BayesiclError(f"prior parameters of {registered.family}/{registered.kind} contain NaN or "
                            "infinite values")
    return np.ascontiguousarray(array, dtype="<f8")


def _described(strategy: Any) -> tuple[str, Any]:
    kind, task = getattr(strategy, "kind", None), getattr(strategy, "task", None)
    if kind not in KINDS or task is None:
        raise BayesiclError("complexity takes a strategy with .kind (memorizing, generalizing or "
                            f"constant) and .task, got {type(strategy).__name__}")
    if kind == "memorizing" and getattr(strategy, "pool", None) is None:
        raise BayesiclError("the memorizing strategy's complexity needs its pool")
    return kind, task
