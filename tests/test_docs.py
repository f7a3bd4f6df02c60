"""Documentation the code cites: every anchor of the model page that it names exists.

Code, tests and docs cite the model page by heading anchors; a renamed heading must not leave
a citation pointing nowhere. Anchors are GitHub's heading slugs, computed here independently.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_PAGE = ROOT / "docs" / "model.md"
CITING = ["bayesicl", "tests", "docs", "examples", "benchmarks", "README.md"]
CITATION = re.compile(r"(?:docs/)?model\.md#([A-Za-z0-9_-]+)")


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)        # no headings in code
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)
    return {github_slug(h) for h in headings}


def citations() -> list[tuple[str, str]]:
    found = []
    for name in CITING:
        base = ROOT / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*")
                                                      if p.suffix in {".py", ".md", ".yaml"})
        for path in files:
            for anchor in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
                found.append((str(path.relative_to(ROOT)), anchor))
    return found


def test_github_slugs_match_githubs_rules():
    assert github_slug("Run effects and honest intervals") == "run-effects-and-honest-intervals"
    assert github_slug("Strategy loss") == "strategy-loss"
    assert github_slug("MAP") == "map"


def test_the_model_page_is_cited_and_every_cited_anchor_exists():
    known = anchors(MODEL_PAGE)
    cited = citations()
    assert len(cited) >= 50                       # the package does cite the page throughout
    dangling = sorted({f"{path}: #{anchor}" for path, anchor in cited if anchor not in known})
    assert dangling == [], "citations of docs/model.md with no such heading:\n" + "\n".join(dangling)


def test_links_inside_the_model_page_point_to_its_headings():
    text = MODEL_PAGE.read_text(encoding="utf-8")
    local = set(re.findall(r"\]\(#([A-Za-z0-9_-]+)\)", text))
    assert local and local <= anchors(MODEL_PAGE), sorted(local - anchors(MODEL_PAGE))


@pytest.mark.parametrize("section", ["task-families", "strategies", "strategy-loss", "complexity",
                                     "rational-model", "transition-step", "observed-weights",
                                     "cutoff", "split", "map", "nuts", "metrics"])
def test_the_model_page_has_the_sections_the_code_relies_on(section):
    assert section in anchors(MODEL_PAGE)
