"""Strategy complexity K_s(D) = K_code + K_data in bits (docs/model.md#complexity).

Every expected value here is computed independently inside the test: the compressors are
called directly, the serialized prior parameters are built by hand, and the canonical Bayes
rules are compared with brute-force formulas written out below.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib
import json
import lzma
import zlib
from typing import Any, NamedTuple

import numpy as np
import pytest
import zstandard

import bayesicl as bic
from bayesicl.errors import BayesiclError
from bayesicl.families import family_spec
from bayesicl.strategies.complexity import (KCODE_PATH, code_length, complexity,
                                            complexity_table, compressed_bits, data_length,
                                            normalized_source, prior_parameters)

import brotli

FAMILIES = ("urns", "regression", "classification")
KINDS = ("memorizing", "generalizing", "constant")
#: Every canonical source: (family, rule); markov's rules carry their order (docs/model.md#markov-strategies).
RULES = [(f, k) for f in FAMILIES for k in KINDS] + [
    ("markov", k) for k in ("memorizing1", "memorizing2", "generalizing1", "generalizing2", "constant")]
DIVERSITIES = [2**k for k in range(2, 13)]        # 4, 8, …, 4096


def independent_bits(data: bytes, paper: bool = False, text: bool = False) -> float:
    """8 × min(raw, lzma 9|extreme, bz2 9, zstd 22, and zlib 9 — or, for the paper, brotli 11
    (text mode for source code) instead of zlib)."""
    sizes = [len(data),
             len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
             len(bz2.compress(data, 9)),
             len(zstandard.ZstdCompressor(level=22).compress(data))]
    if paper:
        sizes.append(len(brotli.compress(data, quality=11, mode=brotli.MODE_TEXT if text else brotli.MODE_GENERIC)))
    else:
        sizes.append(len(zlib.compress(data, 9)))
    return 8.0 * min(sizes)


def paper_array_bits(array: np.ndarray) -> float:
    """The paper's compress_array, written out again: the bits above, or brotli of the deltas
    along the last axis (each row's first entry minus the array's first entry)."""
    deltas = np.empty_like(array)
    rows, last = array.reshape(-1, array.shape[-1]), deltas.reshape(-1, array.shape[-1])
    for i, row in enumerate(rows):
        previous = array.flat[0]
        for j, value in enumerate(row):
            last[i, j], previous = value - previous, value
    return min(independent_bits(array.tobytes(), paper=True),
               8.0 * len(brotli.compress(deltas.tobytes(), quality=11, mode=brotli.MODE_GENERIC)))


def paper_urns_pool(diversity: int) -> np.ndarray:
    """The paper's urns training tasks for d = 8 (its Config(random_seed=1) draw)."""
    return np.random.default_rng(1).dirichlet(np.ones(8), size=diversity)


def make_task(family: str, d: int = 8, **params):
    return bic.task(family, num_dims=d, context_length=16, **params)


# -- compressed size ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["random", "zeros", "text", "short"])
def test_compressed_bits_is_the_minimum_over_the_compressors_and_the_raw_size(name):
    data = {"random": np.random.default_rng(0).bytes(3000), "zeros": bytes(5000),
            "text": b"the memorizing predictor " * 40, "short": b"ab"}[name]
    assert compressed_bits(data) == independent_bits(data)
    assert compressed_bits(data, paper_compatible=True) == independent_bits(data, paper=True)
    if name in ("random", "short"):       # incompressible: the raw size wins
        assert compressed_bits(data) == 8 * len(data)
    else:
        assert compressed_bits(data) < 8 * len(data)


def test_compressed_bits_is_deterministic_and_counts_bits():
    data = np.random.default_rng(1).standard_normal(500).tobytes()
    assert compressed_bits(data) == compressed_bits(bytearray(data)) == compressed_bits(data)
    assert compressed_bits(b"") == 0.0
    assert compressed_bits(data) % 8 == 0


def test_compressed_bits_rejects_anything_but_bytes():
    with pytest.raises(BayesiclError, match="bytes"):
        compressed_bits("text")


# -- K_code: normalization and the frozen canonical sources --------------------------------------

def test_normalization_drops_docstrings_comments_layout_and_whitespace():
    source = '''"""Module docstring."""
import numpy as np  # a comment


class Rule:
    """Class docstring."""

    def predict(self, x):
        """Method docstring."""

        # why, not what
        return np.sum(x,  axis=0) + "a b"


def empty():
    """Only a docstring."""
'''
    expected = ('importnumpyasnp' 'classRule:' 'defpredict(self,x):'
                "returnnp.sum(x,axis=0)+'ab'" 'defempty():pass')
    assert normalized_source(source) == expected


def test_normalization_ignores_formatting_but_not_code():
    tight = "def f(a,b):\n    return a*b\n"
    loose = "def f(a, b):\n\n    # multiply\n    return (a * b)\n"
    assert normalized_source(tight) == normalized_source(loose)
    assert normalized_source(tight) != normalized_source(tight.replace("*", "+"))


def test_stored_code_lengths_match_the_frozen_canonical_sources():
    """Fails when a canonical source changes without regenerating kcode.json."""
    stored = json.loads(KCODE_PATH.read_text())
    folder = KCODE_PATH.parent
    files = sorted(p.name for p in folder.glob("*_*.py") if not p.name.startswith("_"))
    assert files == sorted(f"{f}_{k}.py" for f, k in RULES)
    assert {(f, k) for f in stored["strategies"] for k in stored["strategies"][f]} == set(RULES)
    for family, kind in RULES:
        entry = stored["strategies"][family][kind]
        code = normalized_source((folder / entry["source"]).read_text()).encode()
        assert entry["source"] == f"{family}_{kind}.py"
        assert entry["sha256"] == hashlib.sha256(code).hexdigest(), \
            f"{entry['source']} changed: run `python -m bayesicl.strategies.canonical`"
        assert entry["bits"] == independent_bits(code)
        assert code_length(family, kind) == entry["bits"]
        assert entry["paper_compatible_bits"] == independent_bits(code, paper=True, text=True)
        if kind not in family_spec(family).paper_code_bits:
            assert code_length(family, kind, paper_compatible=True) == entry["paper_compatible_bits"]


def test_the_regeneration_command_writes_exactly_the_stored_file(tmp_path, monkeypatch):
    main = importlib.import_module("bayesicl.strategies.canonical.__main__")
    target = tmp_path / "kcode.json"
    monkeypatch.setattr(main, "KCODE_PATH", target)
    main.main()
    written, stored = json.loads(target.read_text()), json.loads(KCODE_PATH.read_text())
    assert written["strategies"].keys() == stored["strategies"].keys()
    for family, kinds in stored["strategies"].items():
        for kind, entry in kinds.items():
            fresh = written["strategies"][family][kind]
            assert (fresh["sha256"], fresh["bits"]) == (entry["sha256"], entry["bits"])
    assert written["compressors"] == stored["compressors"] == ["raw", "lzma", "bz2", "zlib", "zstd"]


def test_code_length_rejects_an_unknown_strategy():
    with pytest.raises(BayesiclError, match="no canonical source"):
        code_length("markov", "memorizing")


# -- the canonical sources compute their Bayes rules ---------------------------------------------

def canonical(family: str, kind: str):
    return importlib.import_module(f"bayesicl.strategies.canonical.{family}_{kind}")


def test_canonical_urns_rules_match_the_posterior_written_out():
    rng = np.random.default_rng(3)
    pool = rng.dirichlet(np.ones(4), size=5)                       # D = 5, d = 4
    for colours in rng.integers(0, 4, size=(3, 6)):                # 3 sequences, T = 6
        memorizing = canonical("urns", "memorizing").predict(pool, colours)
        generalizing = canonical("urns", "generalizing").predict(np.full(4, 0.7), colours)
        for t in range(6):
            likelihood = np.prod(pool[:, colours[:t]], axis=1)    # Π_{k≤t} θ_i[x_k], no logs
            posterior = likelihood / likelihood.sum()
            np.testing.assert_allclose(memorizing[t], posterior @ pool, rtol=1e-12)
            counts = np.bincount(colours[:t], minlength=4)
            np.testing.assert_allclose(generalizing[t], (counts + 0.7) / (t + 4 * 0.7), rtol=1e-12)
    constant = canonical("urns", "constant").predict(np.full(4, 0.25), colours)
    assert constant.shape == (6, 4) and np.all(constant == 0.25)


def test_canonical_regression_rules_match_mmse_and_ridge_written_out():
    rng = np.random.default_rng(4)
    pool, sigma2 = rng.standard_normal((6, 3)), 0.3
    x, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    memorizing = canonical("regression", "memorizing").predict(pool, sigma2, x, y)
    ridge = canonical("regression", "generalizing").predict(0.0, 1.0, sigma2, x, y)
    for t in range(5):
        errors = ((y[:t, None] - x[:t] @ pool.T) ** 2).sum(axis=0)           # (D,)
        posterior = np.exp(-errors / (2 * sigma2))
        posterior /= posterior.sum()
        np.testing.assert_allclose(memorizing[t], posterior @ pool @ x[t], rtol=1e-10)
        w_hat = np.linalg.inv(x[:t].T @ x[:t] + sigma2 * np.eye(3)) @ x[:t].T @ y[:t]
        np.testing.assert_allclose(ridge[t], w_hat @ x[t], rtol=1e-10, atol=1e-12)
    assert ridge[0] == 0.0
    assert np.all(canonical("regression", "constant").predict(0.0, x, y) == np.zeros(5))


def test_canonical_classification_rules_match_the_spec_formulas():
    rng = np.random.default_rng(5)
    d, eps, labels_count = 4, 0.5, 2
    means, pool_labels = rng.standard_normal((7, d)) / np.sqrt(d), rng.integers(0, 2, 7)
    x = rng.standard_normal((6, d)) / np.sqrt(d)                  # 5 context items + query
    context_labels = np.append(rng.integers(0, 2, 5), -1)
    pool = np.column_stack([means, pool_labels])
    memorizing = canonical("classification", "memorizing").predict(pool, eps, labels_count, x)
    weights = np.array([np.exp(-d / (2 * eps) * np.sum((np.sqrt(1 + eps) * x[-1] - mu) ** 2))
                        for mu in means])
    expected = np.array([weights[pool_labels == label].sum() for label in (0, 1)]) / weights.sum()
    np.testing.assert_allclose(memorizing, np.clip(expected, 1e-5, 1 - 1e-5), rtol=1e-10)

    generalizing = canonical("classification", "generalizing").predict(
        0.0, 1 / d, eps, labels_count, x, context_labels)
    scale = d * (1 + eps) ** 2 / (2 * eps * (2 + eps))
    weights = np.array([np.exp(-scale * np.sum((x[-1] - x_j / (1 + eps)) ** 2)) for x_j in x[:-1]])
    expected = np.array([weights[context_labels[:-1] == label].sum() for label in (0, 1)]) / weights.sum()
    np.testing.assert_allclose(generalizing, np.clip(expected, 1e-5, 1 - 1e-5), rtol=1e-10)
    np.testing.assert_array_equal(
        canonical("classification", "constant").predict(np.full(2, 0.5), x, context_labels), [0.5, 0.5])


@pytest.mark.parametrize("family", FAMILIES)
def test_canonical_rules_fed_the_measured_prior_parameters_reproduce_the_library(family):
    """K_code + K_data describe the predictor: the canonical source run on the very bytes
    K_data compresses gives the library strategy's outputs."""
    task = make_task(family, d=4)
    pool = task.pool(16, seed=2)
    batch = task.sample(pool, num_sequences=4, seed=3)
    for kind in KINDS:
        strategy = getattr(bic.strategies, kind)(*((task, pool) if kind == "memorizing" else (task,)))
        parameters = np.frombuffer(prior_parameters(strategy).tobytes(), dtype=np.float64)
        rule, library = canonical(family, kind).predict, strategy(batch)
        for b in range(4):
            if family == "urns":
                args = (parameters.reshape(16, 4),) if kind == "memorizing" else (parameters,)
                np.testing.assert_allclose(rule(*args, batch["tokens"][b, 1:]), library[b], atol=1e-5)
            elif family == "regression":
                if kind == "memorizing":
                    args = (parameters.reshape(16, 4), task.noise_variance)
                else:
                    args = tuple(parameters)      # G: (m, τ², σ²); C: (0,)
                expected = rule(*args, batch["x"][b], batch["y"][b])
                np.testing.assert_allclose(expected, library[b], rtol=1e-5, atol=1e-5)
            else:
                if kind == "memorizing":
                    got = rule(parameters.reshape(16, 5), task.within_class_variance, 2, batch["x"][b])
                elif kind == "generalizing":
                    got = rule(*parameters, 2, batch["x"][b], batch["labels"][b])
                else:
                    got = rule(parameters, batch["x"][b], batch["labels"][b])
                np.testing.assert_allclose(got, library[b], atol=1e-5)


# -- K_data ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_data_length_compresses_the_prior_parameters_as_float64(family):
    task = make_task(family)
    pool = task.pool(32, seed=1)
    if family == "classification":
        pool_bytes = np.column_stack([pool.means, pool.labels.astype(np.float64)]).tobytes()
        prior, constant = [0.0, 1 / 8, 0.5], [0.5, 0.5]
    elif family == "regression":
        pool_bytes, prior, constant = np.asarray(pool, np.float64).tobytes(), [0.0, 1.0, 8 / 256], [0.0]
    else:
        pool_bytes, prior, constant = np.asarray(pool, np.float64).tobytes(), [1.0] * 8, [1 / 8] * 8
    memorizing = bic.strategies.memorizing(task, pool)
    assert data_length(memorizing) == independent_bits(pool_bytes)
    assert data_length(bic.strategies.generalizing(task)) == independent_bits(np.array(prior).tobytes())
    assert data_length(bic.strategies.constant(task)) == independent_bits(np.array(constant).tobytes())
    for kind in KINDS:
        strategy = memorizing if kind == "memorizing" else getattr(bic.strategies, kind)(task)
        assert complexity(strategy) == code_length(family, kind) + data_length(strategy)


def test_a_weighted_memorizing_prior_adds_its_weights_to_the_data():
    task = make_task("urns")
    pool = task.pool(16, seed=1)
    weights = np.arange(1, 17, dtype=np.float64) ** -1.0
    weights /= weights.sum()
    strategy = bic.strategies.memorizing(task, pool, zipf=1.0)
    assert data_length(strategy) == independent_bits(np.column_stack([pool, weights]).tobytes())


@pytest.mark.parametrize("family", FAMILIES)
def test_memorizing_complexity_strictly_increases_with_diversity(family):
    task = make_task(family)
    values = [complexity(bic.strategies.memorizing(task, task.pool(D, seed=0))) for D in DIVERSITIES]
    assert all(a < b for a, b in zip(values, values[1:])), values
    generalizing = complexity(bic.strategies.generalizing(task))
    assert generalizing < values[0]
    # complexity_table builds the same K_s(D); K_G and K_C do not depend on D.
    table = complexity_table(task, [4, 64, 256], seed=0, kinds=KINDS)
    assert list(table.index) == [4, 64, 256] and table.index.name == "diversity"
    assert list(table["memorizing"]) == [values[0], values[4], values[6]]
    assert set(table["generalizing"]) == {generalizing}
    assert set(table["constant"]) == {complexity(bic.strategies.constant(task))}


def test_complexity_is_deterministic():
    task = make_task("regression")
    strategy = bic.strategies.memorizing(task, task.pool(256, seed=4))
    assert complexity(strategy) == complexity(strategy)
    assert complexity(strategy, paper_compatible=True) == complexity(strategy, paper_compatible=True)


# -- paper_compatible --------------------------------------------------------------------------

def test_paper_convention_gives_the_papers_urns_complexities():
    # The paper reports K_G = 4 416 bits and K_M(4) = 6 832 bits for urns with d = 8.
    task = make_task("urns")
    assert complexity(bic.strategies.generalizing(task), paper_compatible=True) == 4416
    assert complexity(bic.strategies.memorizing(task, paper_urns_pool(4)), paper_compatible=True) == 6832
    # Every other D of the paper's sweep: its K_code plus its compress_array of its pool.
    for diversity in (16, 64, 256, 1024):
        pool = paper_urns_pool(diversity)
        assert complexity(bic.strategies.memorizing(task, pool), paper_compatible=True) == \
            4784 + paper_array_bits(pool)


#: K_M(D) in bits of the paper's own code on its own urns pools (d = 8, `paper_urns_pool`), run
#: on this machine (benchmarks/results/notes.md, "Paper K convention on bayesicl's pools").
PAPER_URNS_K_M = {4: 6832, 8: 8816, 16: 12736, 32: 20424, 64: 35600, 128: 65584, 256: 125616,
                  512: 245680, 1024: 485712}


@pytest.mark.parametrize("diversity", sorted(PAPER_URNS_K_M))
def test_paper_convention_reproduces_the_papers_numbers_at_every_diversity_of_its_sweep(diversity):
    task = make_task("urns")
    memorizing = bic.strategies.memorizing(task, paper_urns_pool(diversity))
    assert complexity(memorizing, paper_compatible=True) == PAPER_URNS_K_M[diversity]


def test_paper_convention_uses_the_papers_code_lengths_where_it_measured_them():
    assert code_length("urns", "memorizing", paper_compatible=True) == 4784
    assert code_length("urns", "generalizing", paper_compatible=True) == 4328
    source = (KCODE_PATH.parent / "regression_memorizing.py").read_text()
    assert code_length("regression", "memorizing", paper_compatible=True) == \
        independent_bits(normalized_source(source).encode(), paper=True, text=True)


def test_paper_convention_stores_the_regression_pool_as_float32():
    task = make_task("regression")
    pool = task.pool(64, seed=1)
    strategy = bic.strategies.memorizing(task, pool)
    paper = data_length(strategy, paper_compatible=True)
    assert paper == paper_array_bits(np.asarray(pool, np.float32)[..., None])     # (D, d, 1) as the paper
    assert paper < 0.6 * data_length(strategy)          # half the bytes, incompressible noise


@pytest.mark.parametrize("family, expected", [
    ("urns", np.ones(8, dtype=np.int64)),                # the Dirichlet pseudo-counts
    ("regression", np.array([0, 1], dtype=np.int64)),     # prior (mean, variance) of w
    ("classification", np.array([0.0, 1 / 8])),          # prior (mean, variance) of exemplars
])
def test_paper_convention_stores_the_task_prior_for_g_and_c(family, expected):
    task = make_task(family)
    for strategy in (bic.strategies.generalizing(task), bic.strategies.constant(task)):
        stored = prior_parameters(strategy, paper_compatible=True)
        assert stored.dtype == expected.dtype and stored.tolist() == expected.tolist()
        assert data_length(strategy, paper_compatible=True) == paper_array_bits(expected)
    with pytest.raises(BayesiclError, match="int64"):
        data_length(bic.strategies.generalizing(make_task("urns", concentration=0.5)),
                    paper_compatible=True)


@pytest.mark.parametrize("family", ["urns", "classification"])
def test_paper_convention_keeps_the_float64_pool(family):
    task = make_task(family)
    memorizing = bic.strategies.memorizing(task, task.pool(64, seed=1))
    stored = prior_parameters(memorizing, paper_compatible=True)
    assert stored.dtype == np.float64 and np.array_equal(stored, prior_parameters(memorizing))
    assert data_length(memorizing, paper_compatible=True) == paper_array_bits(stored)


def test_paper_delta_encoding_helps_smooth_arrays():
    ramp = np.arange(512, dtype=np.int64)                # deltas are all ones
    assert compressed_bits(ramp.tobytes(), paper_compatible=True) > paper_array_bits(ramp)
    assert data_length(bic.strategies.constant(make_task("urns")), paper_compatible=True) == paper_array_bits(
        np.ones(8, dtype=np.int64))


# -- bad input ---------------------------------------------------------------------------------

class StandIn(NamedTuple):
    """Anything with a strategy's attributes: complexity reads nothing else (duck typing)."""

    kind: str
    task: Any
    pool: Any = None


def test_a_duck_typed_strategy_gets_the_same_complexity():
    task = make_task("classification")
    pool = task.pool(8, seed=1)
    assert complexity(StandIn("memorizing", task, pool)) == \
        complexity(bic.strategies.memorizing(task, pool))
    assert complexity(StandIn("generalizing", task)) == complexity(bic.strategies.generalizing(task))


def test_complexity_rejects_what_is_not_a_strategy():
    with pytest.raises(BayesiclError, match="strategy"):
        complexity(object())
    with pytest.raises(BayesiclError, match="pool"):
        complexity(StandIn("memorizing", make_task("urns")))
    with pytest.raises(BayesiclError, match="pool"):          # the task validates the pool
        data_length(StandIn("memorizing", make_task("urns"), np.ones((3, 5))))
    with pytest.raises(BayesiclError, match="diversity"):
        complexity_table(make_task("urns"), [], seed=0)


def test_fit_records_its_k_convention_and_refuses_evidence_of_the_other():
    from bayesicl.inference import fit
    from bayesicl.inference.synthetic import synthetic_evidence

    task = bic.task("urns", num_dims=4, context_length=8)
    evidence = synthetic_evidence(task, [2, 4, 8], [10, 100, 1000], params=(0.6, 0.2, 0.85),
                                  num_sequences=8, loss_sequences=64)
    result = fit(evidence, method="map", holdout=0.0, random_starts=1)
    assert result.summary()["complexity_convention"] == "bayesicl"
    with pytest.raises(BayesiclError, match="convention"):
        fit(evidence, method="map", holdout=0.0, random_starts=1, paper_compatible=True)


@pytest.mark.parametrize("verb", [["fit", "runs"], ["demo"]])
def test_fit_and_demo_take_a_paper_compatible_flag(verb):
    from bayesicl.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(verb + ["--paper-compatible"]).paper_compatible is True
    assert parser.parse_args(verb).paper_compatible is False


def test_paper_convention_on_bayesicls_pools_differs_from_the_papers_by_the_pools_lzma_mode():
    """The paper's K_M(D) are its own pools' sizes; another Dirichlet draw compresses
    differently because lzma (default literal contexts) is bimodal across draws of float64
    pools, while byte-aligned literal contexts (lc 0, lp 3, pb 3) size both alike."""
    task = make_task("urns")
    ours, paper = task.pool(512, 0), paper_urns_pool(512)

    def lzma_bits(pool, **filters):
        if not filters:
            return 8 * len(lzma.compress(pool.tobytes(), preset=9 | lzma.PRESET_EXTREME))
        chain = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, **filters}]
        return 8 * len(lzma.compress(pool.tobytes(), format=lzma.FORMAT_RAW, filters=chain))

    assert lzma_bits(ours) / lzma_bits(paper) > 1.01                     # two modes, ~1.7% apart
    aligned = lzma_bits(ours, lc=0, lp=3, pb=3) / lzma_bits(paper, lc=0, lp=3, pb=3)
    assert abs(aligned - 1) < 0.002
