"""The report page of a fit, read as a user reads it: in a real browser.

The page is loaded in headless Chromium (Debian's package; `make install-test` installs it
where apt-get is available), driven over the DevTools protocol on a pipe — no driver and no
network. Where no browser can be installed the browser test is skipped with that reason;
the tests of the page's content and of the figures' layout run everywhere.
"""

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest

import bayesicl as bic
from bayesicl import plot, report
from bayesicl.cli import main
from bayesicl.inference import FitResult, fit, load_fit
from bayesicl.inference.predict import weights_for
from bayesicl.inference.synthetic import synthetic_evidence

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_browser() -> str | None:
    """$BAYESICL_CHROMIUM, else the first Chromium or Chrome on PATH."""
    if os.environ.get("BAYESICL_CHROMIUM"):
        return os.environ["BAYESICL_CHROMIUM"]
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def above_4(fd: int) -> int:
    """`fd` moved to a number ≥ 10, so that placing the pipes on fds 3 and 4 never clobbers one."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
    messages separated by NUL bytes, the browser reading fd 3 and writing fd 4)."""

    def __init__(self, executable: str, timeout: float = 60.0):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        to_browser, from_browser = above_4(to_browser), above_4(from_browser)
        self.profile = tempfile.mkdtemp(prefix="bayesicl-chromium-")
        self.timeout = timeout

        # The browser expects the protocol on fds 3 and 4; a tiny Python trampoline puts our
        # pipes there and execs it (no preexec_fn: forking a multithreaded JAX process to run
        # Python code in the child is unsafe). --no-sandbox: the tests may run as root (CI
        # containers), where Chromium's sandbox refuses to start.
        trampoline = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
                     "os.execv(sys.argv[3], sys.argv[3:])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_browser), str(from_browser), executable,
             "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for k, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(k)
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _receive(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"the browser did not answer within {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)


def open_page(browser: Browser, url: str, width: int = 1200) -> str:
    """Load `url` in a new tab with console, log and network events on; returns the session."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.call("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired")
    return session


# -- fits ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def map_fit():
    """A MAP fit of small synthetic urns evidence, with a held-out corner (5 D × 4 N)."""
    task = bic.task("urns", num_dims=4, context_length=8)
    evidence = synthetic_evidence(task, [2, 4, 8, 16, 32], [10, 100, 1000, 10000], params=(0.6, 0.2, 0.85),
                                  num_sequences=8, loss_sequences=64)
    return fit(evidence, method="map", holdout=0.2, random_starts=1)


@pytest.fixture(scope="module")
def folder(map_fit, tmp_path_factory):
    """The fit folder as `bayesicl fit` writes it (fit, figures, report.html)."""
    out = map_fit.save(tmp_path_factory.mktemp("fit"))
    paths = plot.save_all(map_fit, out)
    report.write_report(map_fit, out / report.FILE_NAME,
                        figures={os.path.basename(p)[:-4]: open(p, "rb").read() for p in paths})
    return out


def crowded_fit(diversities=tuple(2 ** k for k in range(1, 15)), steps=(20, 40, 80, 150, 300, 600)):
    """A hand-made point fit over many diversities and a short run: the layout that crowds
    tick labels (14 diversities, 2 … 16 384, on one axis; a log step axis spanning less than two decades,
    where matplotlib labels the minor ticks too)."""
    d = np.array(diversities, dtype=np.int64)
    loss = pd.DataFrame({"memorizing": 1.0 - 0.2 * np.log2(d) / np.log2(d).max(),
                         "generalizing": np.full(d.size, 1.05)}, index=pd.Index(d, name="diversity"))
    complexity = pd.DataFrame({"memorizing": 40.0 * d, "generalizing": np.full(d.size, 60.0)},
                              index=pd.Index(d, name="diversity"))
    params = {"alpha": 0.5, "beta": 0.5, "gamma": 2.0}
    grid = pd.DataFrame([(di, s) for di in d for s in steps], columns=["diversity", "step"])
    w = weights_for({k: np.array([v]) for k, v in params.items()}, loss.loc[grid["diversity"]].to_numpy(),
                    complexity.loc[grid["diversity"]].to_numpy(), grid["step"].to_numpy(float))[0]
    rows = []
    for split in ("id", "ood"):
        table = grid.assign(split=split, modeled=True, in_fit=grid["diversity"] < 1024,
                            observed_weight=np.clip(w[:, 0] + 0.05 * np.sin(grid.index), 0, 1),
                            predicted_weight=w[:, 0])
        rows.append(table)
    conditions = pd.concat(rows, ignore_index=True)
    return FitResult(task=bic.task("urns", num_dims=4, context_length=8), settings={}, strategies=("memorizing", "generalizing"),
                     method="map", variant="full", cutoff_step=steps[0], params=params, conditions=conditions,
                     idata=None, loss=loss, complexity=complexity, draws=None, report={}, info={},
                     evidence_conditions=pd.DataFrame())


# -- the page --------------------------------------------------------------------------------------

def test_the_page_is_one_self_contained_file_with_the_verdict_first(folder):
    page = (folder / "report.html").read_text()
    assert "<script" not in page, "the page needs no scripts"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads nothing from a network"
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert sections[0] == "verdict" and sections[1] == "parameters"
    assert {"phase", "metrics", "transition", "figures", "settings", "provenance"} <= set(sections)


def test_the_page_says_what_a_reader_needs(map_fit, folder):
    page = (folder / "report.html").read_text()
    summary = map_fit.summary()
    for guard in summary["guards"]:                                # every guard, in plain words
        assert report.sections.esc(guard) in page
    assert "A MAP fit is one point: no standard deviation, no interval." in page
    for subset in ("fit", "held-out", "all modeled"):              # fit / held-out / all × ID / OOD
        assert page.count(f"<td>{subset}</td>") == 2
    assert "constant " in page and "random " in page               # with the baselines
    assert "No posterior figure: a MAP fit" in page                # the MAP posterior is explained
    for name in summary["versions"]:
        assert f"<td>{name}</td>" in page


def test_docs_outputs_explains_every_file_column_and_key_a_fit_writes(map_fit, folder):
    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "outputs.md")).read()
    documented = set(re.findall(r"`([^`]+)`", page))
    for name in os.listdir(folder):
        assert name in documented, f"file {name}"
    for key in map_fit.summary():
        assert key in documented, f"summary.json key {key}"
    strategies = set(map_fit.strategies)
    for column in map_fit.conditions.columns:
        generic = re.sub(rf"_({'|'.join(strategies)})$", "_<strategy>", column)
        assert column in documented or generic in documented, f"conditions.csv column {column}"
    assert "posterior.nc" in documented and "posterior.png" in documented    # NUTS-only files too


def test_posterior_intervals_are_shown_with_their_level_next_to_the_map():
    summary = {"method": "nuts", "interval_level": 0.8,
               "params": {"alpha": {"mean": 0.57, "sd": 0.03, "low": 0.52, "high": 0.62, "map": 0.556}},
               "objective": {"map_params": {"alpha": 0.556}}}
    html = report.sections.parameters_section(summary)
    assert "80% interval" in html and "[0.52, 0.62]" in html and "<td>0.556</td>" in html


def test_the_verdict_of_an_unidentified_fit_says_its_numbers_are_not_results():
    summary = {"identified": False, "method": "nuts", "guards": ["only 1 modeled step enters the fit"],
               "diagnostics": {"r_hat_max": 1.2, "ess_bulk_min": 50, "divergences": 36, "num_chains": 4,
                               "num_draws": 1000}}
    verdict = report.verdict(summary)
    assert verdict.level == "not identified" and "do not report them as results" in verdict.headline
    assert any("disagree" in line for line in verdict.diagnostics)
    assert any("36 divergent" in line for line in verdict.diagnostics)
    assert "not results" in report.sections.metrics_section({"metrics": {}}, verdict)


def test_transition_steps_beyond_the_last_logged_step_are_marked_extrapolated(map_fit, folder):
    page = (folder / "report.html").read_text()
    table = page[page.index('<section id="transition"'):]
    table = table[:table.index("</section>")]
    rows = re.findall(r"<tr( class=\"extrapolated\")?><td>([\d,]+)</td>", table)
    last = map_fit.conditions["step"].max()
    steps = {int(d): n for d, n in zip(map_fit.transition_steps()["diversity"],
                                       map_fit.transition_steps()["transition_step"])}
    assert len(rows) == len(steps)
    for marked, diversity in rows:
        assert bool(marked) == (steps[int(diversity.replace(",", ""))] > last), diversity
    assert any(marked for marked, _ in rows), "the synthetic fit has N* beyond training at its largest D"


def test_the_report_verb_writes_the_page_of_a_fit_folder(folder, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text()
    assert page.count("<img ") == len(plot.figures_for(load_fit(folder)))
    assert main(["report", str(tmp_path / "missing")]) == 1


def test_the_page_renders_in_headless_chromium_without_errors(folder, tmp_path):
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium or Chrome on this machine (install it: apt-get install chromium; "
                    "`make install-test` does where apt-get is available)")
    url = (folder / "report.html").resolve().as_uri()
    browser = Browser(executable)
    try:
        session = open_page(browser, url)
        sizes = json.loads(browser.call("Runtime.evaluate", {
            "expression": "JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]))",
            "returnByValue": True}, session=session)["result"]["value"])
        first = browser.call("Runtime.evaluate", {
            "expression": "document.querySelector('section').id", "returnByValue": True}, session=session)
        shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=session)
    finally:
        browser.close()
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("BAYESICL_REPORT_SCREENSHOT"):          # keep it to look at
        shutil.copy(screenshot, os.environ["BAYESICL_REPORT_SCREENSHOT"])
    errors = [e["params"] for e in browser.events
              if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u == url or u.startswith("data:") for u in requests), requests
    assert len(sizes) == len(plot.figures_for(load_fit(folder))) >= 4
    assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), sizes
    assert first["result"]["value"] == "verdict"
    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height > 2000, (width, height)   # the whole page, not a blank viewport


def test_fit_without_out_writes_a_folder_beside_the_runs_with_the_report_and_says_each_stage(tmp_path, capsys):
    from bayesicl.inference.synthetic import mixture_output
    from bayesicl.runs import RunWriter

    task = bic.task("urns", num_dims=4, context_length=8)
    for diversity in (2, 4, 8):
        pool = task.pool(diversity, seed=0)
        inputs = task.eval_sets(pool, seed=0, num_sequences=8)
        m, g = bic.strategies.memorizing(task, pool), bic.strategies.generalizing(task)
        writer = RunWriter(tmp_path / "runs" / f"D{diversity}", task, pool, inputs)
        for k, step in enumerate((10, 100, 1000, 10000)):
            w = (k + 1) / 5 * (1 - diversity / 16)
            writer.log(step, {split: mixture_output(np.log(np.stack([m(b), g(b)])), np.array([w, 1 - w]), "log_probs")
                              for split, b in inputs.items()})
        writer.finish()
    assert main(["fit", str(tmp_path / "runs"), "--method", "map", "--all-steps"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "runs-fit"
    assert [line[:5] for line in out.splitlines() if line.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert f"wrote {folder}" in out and "report.html" in out
    assert (folder / "report.html").exists() and (folder / "summary.json").exists()
    assert {p.stem for p in folder.glob("*.png")} == set(plot.figures_for(load_fit(folder)))


# -- the figures -----------------------------------------------------------------------------------

def drawn_texts(figure) -> list:
    """Every piece of text drawn on `figure` outside legends: tick labels, axis labels,
    titles, annotations."""
    texts = list(figure.texts)
    for ax in figure.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            texts += plot.figures.visible_tick_labels(axis)
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def legends(figure) -> list:
    return [legend for legend in [*figure.legends, *(ax.get_legend() for ax in figure.axes)] if legend]


@pytest.mark.parametrize("name", ["phase_diagram", "posterior_odds", "transience", "transition_steps"])
def test_tick_labels_never_overlap_and_legends_hide_no_label(name):
    import matplotlib.pyplot as plt

    figure = plot.FIGURES[name](crowded_fit())
    try:
        figure.set_dpi(plot.DPI)                                       # lay out as saved
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for ax in figure.axes:
            for axis in (ax.xaxis, ax.yaxis):
                # at least 2 px between neighbouring labels: touching text reads as one label
                boxes = [t.get_window_extent(renderer).padded(1) for t in plot.figures.visible_tick_labels(axis)]
                for k, a in enumerate(boxes):
                    for b in boxes[k + 1:]:
                        assert not a.overlaps(b), f"{name}: tick labels overlap at {a} and {b}"
        for legend in legends(figure):
            box = legend.get_window_extent(renderer)
            for text in drawn_texts(figure):
                assert not box.overlaps(text.get_window_extent(renderer)), \
                    f"{name}: the legend hides {text.get_text()!r}"
        assert all(len(plot.figures.visible_tick_labels(ax.xaxis)) >= 2 for ax in figure.axes
                   if ax.get_label() != "<colorbar>")
    finally:
        plt.close(figure)


def test_a_map_fit_has_no_posterior_figure_and_says_why(map_fit, folder):
    assert "posterior" not in plot.figures_for(map_fit)
    assert not (folder / "posterior.png").exists()
    with pytest.raises(bic.BayesiclError, match="no posterior"):
        plot.posterior(map_fit)
