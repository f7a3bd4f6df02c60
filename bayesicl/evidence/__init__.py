"""Evidence: the transformer's observed behaviour and the strategies' terms, per condition.

The stage between logged runs and the fit (docs/model.md#observed-weights): `build_evidence` reads runs, runs the
strategies on the runs' evaluation inputs, computes L̄_s(D) and K_s(D) and the distances of
the transformer to every strategy; `evidence_from_arrays` does the same from arrays. The
observations are labelled (`Evidence.dataset`: conditions indexed by configuration,
diversity, seed and step; a split dimension), so ``evidence.sel(diversity=64, step=5000)``
selects them. Results are cached outside the runs' folder (see `bayesicl.evidence.cache`). `unresolved_loss_signs`
and `loss_sign_warning` say where the paired ΔL̄ = L̄_M − L̄_G is within 2 standard errors of 0.

>>> from bayesicl.evidence import Evidence, evidence_from_arrays, build_evidence
"""

from __future__ import annotations

from .build import build_evidence
from .table import Evidence, evidence_from_arrays, observe_conditions
from .terms import (COMPLEXITY_CONVENTIONS, StrategyTerms, loss_sign_warning, terms_table,
                    unresolved_loss_signs)

__all__ = ["Evidence", "build_evidence", "evidence_from_arrays", "observe_conditions",
           "COMPLEXITY_CONVENTIONS", "StrategyTerms", "terms_table", "unresolved_loss_signs",
           "loss_sign_warning"]
