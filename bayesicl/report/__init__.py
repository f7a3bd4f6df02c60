"""The report of a fit: one self-contained HTML page (``report.html``) that a researcher can
open or attach — the verdict first (identified or not, diagnostics, guards in plain words),
the parameters with their intervals, the figures, the metrics against the baselines, N*(D)
with extrapolation marked, the settings, versions and the runs' hash.

`bayesicl fit` and `bayesicl demo` write it beside the fit; `bayesicl report FIT` writes it
for any fit folder.

>>> from bayesicl.report import render_report, write_report, verdict
>>> verdict({"identified": True, "guards": [], "method": "map", "diagnostics": {}}).headline
'Identified: the diagnostics pass and no guard fired.'
"""

from .page import FILE_NAME, draw_figures
from .render import render_report, write_report
from .verdict import Verdict, verdict

__all__ = ["FILE_NAME", "Verdict", "draw_figures", "render_report", "verdict", "write_report"]
