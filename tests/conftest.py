"""Fixtures shared across test files."""

import pytest
from fit_reference import urns_grid


@pytest.fixture(scope="session")
def grid():
    """The synthetic urns grid of the fit tests (fit_reference.urns_grid), computed once per
    test process."""
    return urns_grid()
