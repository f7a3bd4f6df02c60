"""The paper's fit objective (docs/model.md#map), tabulated once so that optimizing it is cheap.

J(W) = (1/C) Σ_c f_c(W_c), the equal-weight mean over the fit conditions of

    f_c(w) = mean over sequences × scored positions of KL(T_c ‖ Σ_s w_s s)   (distributions)
    f_c(w) = mean over sequences × scored positions of (T_c − Σ_s w_s s)²     (regression)

on the ID split. J depends on (α, β, γ) only through each condition's weights W_c, so the
token-level work is done once:

- regression: f_c is exactly quadratic, f_c(w) = f*_c + (v − v*_c)ᵀ A_c (v − v*_c) with v the
  weights of every strategy but G (Σ_s w_s = 1); f*_c, v*_c, A_c are stored, no tokens.
- two distributions: f_c(w_M) is smooth and convex on [0, 1]; f_c, f_c' and f_c'' are
  tabulated at `NODES` Chebyshev-spaced nodes (denser at 0 and 1, where f_c bends most)
  when the evidence is built (`bayesicl.evidence.statistics`); the surrogate interpolates
  f_c, f_c' by cubic Hermite polynomials, so an optimizer step touches C × K numbers.
- more than two distributions: J is computed exactly from the tokens (slower; the fit
  conditions' ID outputs are read from the evidence's source into memory).

`exact_terms` evaluates f_c, ∇f_c and ∇²f_c at given weights: from the tokens (float64) with
more than two distributions, exactly for regression, and for two distributions by quintic
Hermite interpolation of the tabulated f_c, f_c', f_c'' (`bayesicl.evidence.statistics.
quintic_hermite`: 2e-10 on the shipped urns MAP objective; on arbitrary distributions up to ~1e-5 relative near w = 0 or 1, with no pass over the
tokens); the MAP fit polishes the surrogate's optimum with Newton steps on them and reports
that objective. KL uses the conventions of `bayesicl.observe`: log-probabilities floored
at log 1e-30 and renormalized, mixtures of probabilities floored at 1e-30.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import observe
from ..errors import BayesiclError
from ..evidence.statistics import kl_tables, quintic_hermite
from ..evidence.tabulation import NODES, REFERENCE, chebyshev_nodes

def hermite(nodes, values, slopes, x):
    """Cubic Hermite interpolation of (values, slopes) given at the Chebyshev `nodes` (K,) of
    `chebyshev_nodes`, evaluated at x.

    values, slopes (..., K); x (...) is clipped to [0, 1]. Returns (...). Exact for cubics;
    C¹ everywhere, so gradients through it are continuous.

    >>> nodes = jnp.asarray(chebyshev_nodes(3)); x = jnp.array(0.3)
    >>> float(hermite(nodes, nodes ** 3, 3 * nodes ** 2, x).round(6))
    0.027
    """
    return hermite_with_slope(nodes, values, slopes, x)[0]


@jax.jit
def hermite_with_slope(nodes, values, slopes, x, rows=None):
    """The Hermite interpolant of `hermite` and its derivative in x, both (...).

    The interval holding x is found in closed form, k = ⌊(K − 1)·arccos(1 − 2x)/π⌋, not by a
    search: this runs inside every NUTS leapfrog step. With `rows` (integers, shaped as x),
    values and slopes are tables (R, K) and x is read on row `rows`: only the two nodes
    around each x are gathered, never a (..., K) copy of the table per x.

    >>> nodes = jnp.asarray(chebyshev_nodes(3))
    >>> [round(float(v), 6) for v in hermite_with_slope(nodes, nodes ** 3, 3 * nodes ** 2, jnp.array(0.3))]
    [0.027, 0.27]
    >>> table = jnp.stack([nodes ** 3, 2 * nodes ** 3]); gradient = jnp.stack([3 * nodes ** 2, 6 * nodes ** 2])
    >>> [round(float(v), 6) for v in hermite_with_slope(nodes, table, gradient, jnp.array([0.3, 0.3]),
    ...                                                  rows=jnp.array([1, 0]))[0]]
    [0.054, 0.027]
    """
    nodes = jnp.asarray(nodes)
    count = nodes.shape[0]
    x = jnp.clip(jnp.asarray(x), 0.0, 1.0)
    if rows is not None:
        rows, x = jnp.broadcast_arrays(jnp.asarray(rows), x)
    position = (count - 1) * jnp.arccos(jnp.clip(1.0 - 2.0 * x, -1.0, 1.0)) / jnp.pi
    k = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, count - 2)
    x0, x1 = nodes[k], nodes[k + 1]
    width = x1 - x0
    t = (x - x0) / width
    if rows is None:
        take = lambda table, i: jnp.take_along_axis(table, i[..., None], axis=-1)[..., 0]  # noqa: E731
    else:
        take = lambda table, i: jnp.asarray(table)[rows, i]  # noqa: E731
    y0, y1 = take(values, k), take(values, k + 1)
    m0, m1 = take(slopes, k), take(slopes, k + 1)
    t2, t3 = t * t, t * t * t
    value = ((2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * width * m0
             + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * width * m1)
    slope = ((6 * t2 - 6 * t) * (y0 - y1) / width + (3 * t2 - 4 * t + 1) * m0 + (3 * t2 - 2 * t) * m1)
    return value, slope


@dataclasses.dataclass(frozen=True, eq=False)
class PaperObjective:
    """The paper's objective on the fit conditions, ready to optimize.

    ``mode`` is "hermite" (two distributions), "quadratic" (regression) or "tokens" (more
    than two distributions); ``tables`` is the pytree `surrogate` reads (with "hermite",
    also the tabulated f'' that `exact_terms` reads). ``tokens`` holds what `exact_terms`
    needs with more than two distributions (None otherwise): the transformer's log-probs
    (C, n, O) as stored (float32), the strategies' probabilities (R', S, n, O) float64 and
    each condition's index into them (C,); n = sequences × scored positions.
    """

    mode: str
    num_conditions: int
    num_strategies: int
    tables: dict[str, Any]
    tokens: dict[str, Any] | None
    tabulation_s: float = 0.0

    def surrogate(self, weights):
        """J on the tables (JAX; exact for "quadratic" and "tokens"); weights (C, S)."""
        return surrogate_value(self.mode, self.tables, weights)

    def exact_terms(self, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact f_c, ∇_w f_c (C, S) and ∇²_w f_c (C, S, S) at weights (C, S), float64."""
        if self.mode == "hermite":
            return _quintic_terms(self.tables, np.asarray(weights, dtype=np.float64))
        weights = jnp.asarray(weights, dtype=jnp.float64)
        if self.mode == "quadratic":
            out = _quadratic_terms(self.tables, weights)
        else:
            out = _kl_terms(weights, self.tokens["log_t"], self.tokens["probs"], self.tokens["run"])
        return tuple(np.asarray(a, dtype=np.float64) for a in out)

    def exact(self, weights) -> float:
        """The exact objective J(W) = mean_c f_c(W_c), float64."""
        return float(np.mean(self.exact_terms(weights)[0]))


def surrogate_value(mode: str, tables: dict[str, Any], weights):
    """J(W) from the tables of `paper_objective` (mode as in `PaperObjective`)."""
    if mode == "hermite":
        return jnp.mean(hermite(tables["nodes"], tables["values"], tables["slopes"], weights[:, 0]))
    if mode == "quadratic":
        return jnp.mean(_quadratic_terms(tables, weights)[0])
    if mode == "tokens":
        return jnp.mean(_kl_values(weights, tables["log_t"], tables["probs"], tables["run"]))
    raise BayesiclError(f"unknown objective mode {mode!r}")


def taylor_value(f0, grad, hess, center, weights):
    """The second-order model of J around `center`: mean_c f_c + ∇f_c·Δ + ½ Δᵀ∇²f_c Δ.

    Its gradient and Hessian in (α, β, γ) at the center equal the exact ones of J (the chain
    rule needs only the first two derivatives of f_c), which is what a Newton step uses.
    """
    delta = weights - center
    return jnp.mean(f0 + jnp.sum(grad * delta, -1) + 0.5 * jnp.einsum("cs,cst,ct->c", delta, hess, delta))


def paper_objective(evidence, rows, nodes: int = NODES) -> PaperObjective:
    """Tabulate the paper's objective for the conditions `rows` (indices into the evidence).

    >>> import bayesicl as bic, numpy as np
    >>> from bayesicl.evidence import evidence_from_arrays
    >>> task = bic.task("urns", num_dims=3, context_length=2)
    >>> rng = np.random.default_rng(0)
    >>> s = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 2, 4, 2)))      # (R, S, split, B, P, O)
    >>> t = np.log(0.3 * np.exp(s[:, 0]) + 0.7 * np.exp(s[:, 1]))
    >>> ev = evidence_from_arrays(task, ("memorizing", "generalizing"), t, s, diversity=[4],
    ...     step=[10], loss=np.ones((1, 2)), complexity=np.ones((1, 2)), cutoff="all")
    >>> objective = paper_objective(ev, [0])
    >>> objective.exact([[0.3, 0.7]]) < 1e-12 < objective.exact([[0.9, 0.1]])
    True
    """
    start = time.perf_counter()
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise BayesiclError("no fit conditions: nothing to fit (check the cutoff and holdout)")
    statistics = evidence.statistics
    num_strategies = len(evidence.strategies)
    if evidence.output_kind == "predictions":
        tables = {"star": jnp.asarray(statistics["quadratic_star"].values[rows]),
                  "center": jnp.asarray(statistics["quadratic_center"].values[rows]),
                  "matrix": jnp.asarray(statistics["quadratic_matrix"].values[rows])}
        out = PaperObjective("quadratic", rows.size, num_strategies, tables, None)
    elif num_strategies == 2:
        grid = chebyshev_nodes(nodes)
        stored = statistics["node_value"].values
        if stored.shape == grid.shape and np.allclose(stored, grid, rtol=0, atol=1e-15):
            tables = {name: np.asarray(statistics[f"objective_{name}"].values[rows])
                      for name in ("value", "slope", "curvature")}
        else:                                   # other nodes than those tabulated: tabulate again
            tables = _tabulate_from_source(evidence, rows, grid)
        tables = {"nodes": jnp.asarray(grid), "values": jnp.asarray(tables["value"]),
                  "slopes": jnp.asarray(tables["slope"]), "curvatures": jnp.asarray(tables["curvature"])}
        out = PaperObjective("hermite", rows.size, 2, tables, None)
    else:
        log_t, probs, run_index = _id_tokens(evidence, rows)
        tokens = {"log_t": jnp.asarray(log_t), "probs": jnp.asarray(probs), "run": jnp.asarray(run_index)}
        out = PaperObjective("tokens", rows.size, num_strategies, tokens, tokens)
    return dataclasses.replace(out, tabulation_s=time.perf_counter() - start)


def _id_rows_blocks(evidence, rows):
    """(positions in `rows`, ID outputs at the scored positions (c, B, P', O)) of the evidence's
    conditions `rows`, one source block at a time, with the run of each block."""
    split = evidence.splits.index("id")
    scored = evidence.scored
    wanted = np.zeros(evidence.num_conditions, dtype=bool)
    wanted[rows] = True
    position = np.full(evidence.num_conditions, -1)
    position[rows] = np.arange(rows.size)
    runs = np.unique(evidence.conditions["run"].to_numpy()[rows])
    for r in runs:
        for block_rows, block in evidence.source.blocks(int(r)):
            keep = wanted[block_rows]
            if keep.any():
                yield int(r), position[block_rows[keep]], block[keep][:, split][:, :, scored]


def _id_tokens(evidence, rows):
    """The fit conditions' ID log-probs (C, n, O) float32, the strategies' probabilities (R', S,
    n, O) float64 and each condition's index into them (C,); n = sequences × scored positions."""
    split = evidence.splits.index("id")
    scored = evidence.scored
    run_of = evidence.conditions["run"].to_numpy()[rows]
    runs, run_index = np.unique(run_of, return_inverse=True)
    log_t = None
    for _, where, block in _id_rows_blocks(evidence, rows):
        if log_t is None:
            log_t = np.empty((rows.size, block.shape[1] * block.shape[2], block.shape[3]), dtype=np.float32)
        log_t[where] = block.reshape(block.shape[0], -1, block.shape[3])
    strategies = np.stack([np.asarray(evidence.source.strategy(int(r)))[:, split][:, :, scored] for r in runs])
    num_strategies, num_outputs = strategies.shape[1], strategies.shape[-1]
    probs = observe.prepare(strategies, "log_probs", np.ones(strategies.shape[-2], bool)).probs
    return log_t, probs.reshape(len(runs), num_strategies, -1, num_outputs), run_index


def _tabulate_from_source(evidence, rows, grid):
    """f_c, f_c', f_c'' at `grid` for the conditions `rows`, streamed from the evidence's source."""
    split = evidence.splits.index("id")
    scored = evidence.scored
    out = {name: np.empty((rows.size, grid.size)) for name in ("value", "slope", "curvature")}
    for r, where, block in _id_rows_blocks(evidence, rows):
        strategies = np.asarray(evidence.source.strategy(r))[:2, split][:, :, scored]
        probs = observe.prepare(strategies, "log_probs", np.ones(strategies.shape[-2], bool)).probs
        t = observe.prepare(block, "log_probs", np.ones(block.shape[-2], bool))
        for name, value in kl_tables(t.values, t.probs, probs, grid).items():
            out[name.removeprefix("objective_")][where] = value
    return out


def _quintic_terms(tables, weights: np.ndarray):
    """f_c, ∇f_c, ∇²f_c of two distributions at weights (C, 2) from the tabulated f, f', f''.

    f_c depends on w_M alone along the simplex (w_G = 1 − w_M): the gradient (f', 0) and the
    Hessian [[f'', 0], [0, 0]] give the exact first- and second-order change for every move
    that stays on the simplex, which is all the fit makes.
    """
    value, slope, curvature = quintic_hermite(np.asarray(tables["nodes"]), np.asarray(tables["values"]),
                                              np.asarray(tables["slopes"]), np.asarray(tables["curvatures"]),
                                              weights[:, 0])
    grad = np.zeros(weights.shape)
    grad[:, 0] = slope
    hess = np.zeros(weights.shape + (2,))
    hess[:, 0, 0] = curvature
    return value, grad, hess


# -- regression: an exact quadratic -------------------------------------------------------------------

@jax.jit
def _quadratic_terms(tables, weights):
    others = [s for s in range(weights.shape[1]) if s != REFERENCE]
    delta = weights[:, others] - tables["center"]                                 # (C, S−1)
    a = tables["matrix"]
    value = tables["star"] + jnp.einsum("ci,cij,cj->c", delta, a, delta)
    num = weights.shape[1]
    grad = jnp.zeros(weights.shape).at[:, others].set(2 * jnp.einsum("cij,cj->ci", a, delta))
    index = jnp.asarray(others)
    hess = jnp.zeros((weights.shape[0], num, num)).at[:, index[:, None], index[None, :]].set(2 * a)
    return value, grad, hess


# -- distributions: KL(T ‖ Σ w s) from the tokens ------------------------------------------------------

def _normalize(log_t):
    """`observe.normalize_log_probs` in JAX, float64."""
    log_t = jnp.maximum(log_t.astype(jnp.float64), observe.LOG_FLOOR)
    return log_t - jax.nn.logsumexp(log_t, axis=-1, keepdims=True)


def _condition_kl(w, log_t, probs):
    """f, ∇f, ∇²f of KL(T ‖ Σ w s) averaged over entries: w (S,), log_t (n, O), probs (S, n, O)."""
    lt = _normalize(log_t)
    pt = jnp.exp(lt)
    h = jnp.maximum(jnp.einsum("s,sno->no", w, probs), observe.PROBABILITY_FLOOR)
    count = log_t.shape[0]
    value = jnp.sum(pt * (lt - jnp.log(h))) / count
    ratio = pt / h
    grad = -jnp.einsum("no,sno->s", ratio, probs) / count
    hess = jnp.einsum("no,sno,tno->st", ratio / h, probs, probs) / count
    return value, grad, hess


@jax.jit
def _kl_terms(weights, log_t, probs, run):
    return jax.lax.map(lambda a: _condition_kl(a[0], a[1], probs[a[2]]), (weights, log_t, run))


@jax.jit
def _kl_values(weights, log_t, probs, run):
    def one(a):
        w, lt, r = a
        lt = _normalize(lt)
        h = jnp.maximum(jnp.einsum("s,sno->no", w, probs[r]), observe.PROBABILITY_FLOOR)
        return jnp.sum(jnp.exp(lt) * (lt - jnp.log(h))) / lt.shape[0]

    return jax.lax.map(one, (weights, log_t, run))
