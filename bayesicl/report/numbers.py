"""How the report page writes numbers: four significant digits, ∞ and n/a spelled out.

summary.json writes ∞ as the string "inf" and an undefined value (NaN) as null; the page
shows them as ∞ and n/a, so the two are never confused.
"""

from __future__ import annotations

import math
from typing import Any


def number(value: Any, digits: int = 4) -> str:
    """A value as the page shows it.

    >>> [number(v) for v in (0.56823, 1234567.0, 2.5e-5, None, "inf", float("-inf"), 12, True)]
    ['0.5682', '1,234,567', '2.5e-05', 'n/a', '∞', '−∞', '12', 'yes']
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 100_000 else str(value)
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if 1e4 <= abs(value) < 1e12:
        return f"{value:,.0f}"                 # steps and bits: whole numbers, grouped
    return f"{value:.{digits}g}"


def percent(value: Any) -> str:
    """A share as a percentage.

    >>> percent(0.9), percent(0.8234), percent(None)
    ('90%', '82.3%', 'n/a')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.3g}%"
