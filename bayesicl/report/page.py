"""The report page: one self-contained HTML file per fit (figures embedded, no scripts, no
network), in the order a reader needs it — the verdict, the parameters, the phase diagram,
how well the model predicts the transformer, N*(D), the other figures, the settings and the
provenance.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .._version import __version__
from ..inference.result import FILES
from ..plot.files import draw_figures
from . import sections
from .sections import esc
from .verdict import verdict

#: What each figure shows, under it on the page.
CAPTIONS = {
    "phase_diagram": "Observed (left) and predicted (right) memorizing weight over task diversity D and "
                     "training step N, on the ID split: red = memorizing, blue = generalizing. Black line: "
                     "predicted transition step N*(D); dashed: the cutoff N<sub>0</sub> (modeled above it); "
                     "hatched: held-out conditions (the extrapolation test).",
    "transience": "Memorizing weight over training, one colour per D: dots observed (hollow: before "
                  "N<sub>0</sub>, not modeled), lines predicted with their credible band (NUTS).",
    "posterior_odds": "Log posterior odds of memorizing vs generalizing against N<sup>1−α</sup>: under the "
                      "model each D is a straight line; dots are the observed log-odds.",
    "transition_steps": "Predicted N*(D) on log–log axes with the fitted power law; hollow markers are "
                        "extrapolations beyond the last logged step.",
    "posterior": "Joint posterior of (α, β, γ): pairwise densities and marginals (NUTS draws).",
    "run_effects": "Each run's log-odds effect against its diversity D with its interval (filled: ID; hollow: "
                   "the OOD stage's extra effect; grey: ±σ<sub>run</sub>): what the rational model does not "
                   "explain. A trend over D is structure the model misses.",
    "strategy_phases": "Which strategy dominates over D and N, observed and predicted (more than two strategies).",
}
FILE_NAME = "report.html"
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:12px 0 4px}
.sub{color:#555;margin-top:0}
.verdict{border-left:8px solid;padding:4px 16px 8px;border-radius:4px}
.verdict.trusted{border-color:#2e7d32;background:#eef7ee}.verdict.caution{border-color:#ed8c00;background:#fff6e5}
.verdict.not-identified{border-color:#c62828;background:#fdecec}
.headline{font-size:17px;font-weight:600}
table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #e2e2e2;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f6;font-weight:600}
table.metrics{display:block;overflow-x:auto;max-width:100%}table.metrics td{white-space:nowrap}
.base{color:#777;font-size:12px}
table.kv td:first-child{font-weight:600;white-space:nowrap}
tr.extrapolated td{color:#8a4b00;background:#fff8ee}
.note{color:#555;font-size:13px}.warning{color:#c62828;font-weight:600}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:13px;max-width:900px}
code{font-size:13px}
"""


def render_fit_report(fit, figures: Mapping[str, bytes] | None = None) -> str:
    """The report page of one `bayesicl.inference.FitResult` as one HTML string (the page of any
    fit, population fits included, is `bayesicl.report.render_report`).

    `figures` maps a figure name (``plot.FIGURES``) to its PNG bytes, e.g. the files
    `plot.save_all` just wrote; without it the figures are drawn here. The page has no
    scripts and loads nothing: images are embedded as base64 data.
    """
    summary = fit.summary()
    info = fit.info or {}
    if figures is None:
        figures = draw_figures(fit)
    v = verdict(summary, info)
    last_step = float(fit.conditions["step"].max()) if len(fit.conditions) else None
    title = f"bayesicl fit: {summary.get('task')}, {summary.get('method', '').upper()}"
    names = list(figures)
    first = [n for n in names if n == "phase_diagram"]
    rest = [n for n in names if n != "phase_diagram"]
    files = _folder_files(fit, names)
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">The rational strategy model (α, β, γ) fitted to logged transformer runs: '
        f'{esc(" vs ".join(summary.get("strategies") or []))}, '
        f'{sections.number(summary.get("n_conditions", {}).get("fit"))} fit conditions.</p>',
        sections.verdict_section(v),
        sections.parameters_section(summary),
        _figures_html(first, figures, "Phase diagram"),
        sections.metrics_section(summary, v),
        sections.transition_section(summary, last_step),
        _figures_html(rest, figures, "Figures") + _missing_posterior_note(fit, names),
        sections.settings_section(summary, info),
        sections.provenance_section(summary, files, __version__),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")


def _figures_html(names: list[str], figures: Mapping[str, bytes], heading: str) -> str:
    if not names:
        return ""
    parts = [f"<section id=\"{'phase' if heading == 'Phase diagram' else 'figures'}\"><h2>{heading}</h2>"]
    for name in names:
        data = base64.b64encode(figures[name]).decode("ascii")
        caption = CAPTIONS.get(name, esc(name.replace("_", " ")))
        parts.append(f'<figure id="figure-{esc(name)}"><img src="data:image/png;base64,{data}" '
                     f'alt="{esc(name.replace("_", " "))}"><figcaption><b>{esc(name)}.png</b> — {caption}'
                     "</figcaption></figure>")
    parts.append("</section>")
    return "".join(parts)


def _missing_posterior_note(fit, names: list[str]) -> str:
    if "posterior" in names or getattr(fit, "idata", None) is not None:
        return ""
    return ('<p class="note">No posterior figure: a MAP fit is one point of the paper\'s objective, with no '
            "posterior to draw. Fit with <code>--method nuts</code> for the joint posterior of (α, β, γ).</p>")


def _folder_files(fit, figure_names: list[str]) -> list[str]:
    files: list[Any] = [name for key, name in FILES.items() if key != "posterior" or fit.idata is not None]
    return files + [f"{name}.png" for name in figure_names] + [FILE_NAME]
