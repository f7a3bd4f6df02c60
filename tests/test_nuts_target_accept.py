"""NUTS samples at a family's own target acceptance where the default leaves divergences
(docs/decisions.md, "Target acceptance 0.99 for regression and classification fits")."""

from __future__ import annotations

import pytest

import bayesicl as bic
from bayesicl.inference import nuts
from bayesicl.inference.pipeline import fit
from bayesicl.inference.synthetic import synthetic_evidence


class SamplerBuilt(Exception):
    """Raised by the spy in place of compiling the sampler."""


@pytest.mark.parametrize("family, expected", [("regression", 0.99), ("urns", nuts.TARGET_ACCEPT)])
def test_the_sampler_is_built_with_the_family_target_acceptance(monkeypatch, family, expected):
    seen = {}

    def spy(*args):
        seen["target_accept"] = args[-1]
        raise SamplerBuilt

    monkeypatch.setattr(nuts, "_sampler", spy)
    task = bic.task(family, num_dims=2, context_length=4)
    evidence = synthetic_evidence(task, [2, 4, 8], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
                                  num_sequences=8, loss_sequences=64)
    with pytest.raises(SamplerBuilt):
        fit(evidence, method="nuts", holdout=0.0, random_starts=1)
    assert seen["target_accept"] == expected
    assert nuts.family_target_accept(task) == expected
