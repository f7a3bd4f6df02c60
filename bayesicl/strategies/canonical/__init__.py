"""Canonical reference sources of each strategy's Bayes rule (docs/model.md#complexity), frozen.

One short NumPy file per (family, kind), `{family}_{kind}.py`, each with a `predict` function
for a single sequence whose first arguments are the strategy's prior parameters (what K_data
measures). They are the definition of K_code, not the code bayesicl runs: the optimized JAX
strategies may change, these may not unless `kcode.json` is regenerated with
`python -m bayesicl.strategies.canonical`, which a test checks.

>>> import numpy as np
>>> from bayesicl.strategies.canonical import urns_generalizing
>>> urns_generalizing.predict(np.ones(2), [0])[0].tolist()
[0.5, 0.5]
"""
