"""The figures, report page and demo text of a population fit over configurations.

One small synthetic population (urns d = 4, context length 8 and 16 × MLP width 16 and 64:
four configurations drawn from a known population model, `synthetic_population`) is fitted
once with partial pooling through the public API (`fit_population`, NUTS 2 chains × 150
draws, no OOD stage, the last step and the largest diversity held out) and shared by the tests
of this file.
"""

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import bayesicl as bic
from bayesicl import plot, report
from bayesicl.cli import main
from bayesicl.demo import run_demo
from bayesicl.demo_population import DEMO_SAMPLER
from bayesicl.report.population_text import format_population_report, transition_table_lines
from bayesicl.errors import BayesiclError
from bayesicl.inference.population import fit_population
from bayesicl.inference.synthetic import synthetic_population
from bayesicl.plot import population as figures

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRID = {"mlp_width": [16, 64], "context_length": [8, 16]}
DIVERSITIES = [4, 8, 16]
STEPS = [100, 300, 1000, 3000]


@pytest.fixture(scope="module")
def population():
    evidence = synthetic_population(bic.task("urns", num_dims=4, context_length=8), GRID, DIVERSITIES, STEPS,
                                    num_sequences=4, loss_sequences=32, seed=1).evidence
    return fit_population(evidence, pool="partial", method="nuts", num_chains=2, num_samples=150,
                          num_warmup=150, random_starts=1, seed=0, ood_stage=False, holdout=0.4)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def meshes(ax):
    return [c for c in ax.collections if isinstance(c, QuadMesh)]


def test_the_phase_diagram_grid_has_an_observed_and_a_predicted_panel_for_every_configuration(population):
    fig = figures.configuration_phase_diagrams(population)
    titles = [ax.get_title() for ax in fig.axes if meshes(ax) and ax.get_title()]   # not the colour bar
    names = [figures.short_name(n) for n in population.names]
    assert len(titles) == 2 * len(names)
    for name in names:
        assert f"{name}: observed" in titles and f"{name}: predicted" in titles


def test_each_configuration_panel_shows_its_own_weights_and_hatches_its_held_out_cells(population):
    fig = figures.configuration_phase_diagrams(population)
    name = population.names[0]
    rows = population.conditions[(population.conditions["configuration"] == name)
                                 & (population.conditions["split"] == "id")]
    panel = next(ax for ax in fig.axes if ax.get_title() == f"{figures.short_name(name)}: observed")
    drawn = np.sort(np.ma.compressed(meshes(panel)[0].get_array()))
    table = rows.pivot_table(index="step", columns="diversity", values="observed_weight", aggfunc="mean")
    assert np.allclose(drawn, np.sort(table.to_numpy().ravel()[np.isfinite(table.to_numpy().ravel())]))
    held = (rows["modeled"] & ~rows["in_fit"]).any()
    hatched = [c for c in panel.collections if c.get_hatch() == "///"]
    assert held and hatched


def test_the_transition_figure_has_a_panel_per_context_length_and_a_line_per_mlp_width(population):
    fig = figures.configuration_transitions(population)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == ["context_length = 16", "context_length = 8"]
    for ax in panels:
        labels = ax.get_legend_handles_labels()[1]
        assert [label for label in labels if label.startswith("mlp_width")] == ["mlp_width = 16", "mlp_width = 64"]


def test_the_covariate_trend_predicts_mlp_widths_nobody_trained(population, monkeypatch):
    asked = []
    predict = population.predict

    def spy(diversity, step, config, **kwargs):
        asked.append(dict(config))
        return predict(diversity, step, config, **kwargs)

    monkeypatch.setattr(population, "predict", spy)
    fig = figures.covariate_trend(population)
    widths = {c["mlp_width"] for c in asked}
    assert widths - set(GRID["mlp_width"]), "the curve must pass through untrained widths"
    assert min(widths) < 16 and max(widths) > 64                 # into the extrapolation margin
    assert {c["context_length"] for c in asked} == set(GRID["context_length"])
    chosen = figures.trend_diversities(population)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert [label for label in labels if label.startswith("D=")] == [f"D={d}" for d in chosen]


def test_the_covariate_trend_refuses_a_setting_that_is_not_a_covariate(population):
    with pytest.raises(BayesiclError, match="not a covariate"):
        figures.covariate_trend(population, covariate="num_dims")


def test_the_forest_plot_lists_every_configuration_for_alpha_beta_and_gamma(population):
    fig = figures.forest(population)
    titled = [ax for ax in fig.axes if ax.get_title() in ("alpha", "beta", "gamma")]
    assert [ax.get_title() for ax in titled] == ["alpha", "beta", "gamma"]
    rows = {t.get_text() for t in titled[0].get_yticklabels()}
    assert rows == {figures.short_name(n) for n in population.names}


def test_the_predicted_configuration_figure_is_written_for_an_untrained_width(population, tmp_path):
    with pytest.warns(bic.errors.BayesiclWarning, match="outside|extrapolat"):
        prediction = population.predict(diversity=[4, 8, 16, 32], step=[100, 1000, 10000],
                                        config={"mlp_width": 100, "context_length": 16})
    paths = plot.plot_predicted_configuration(prediction, tmp_path / "new")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["predicted_configuration.png"]
    assert open(paths[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    fig = figures.predicted_configuration(prediction)
    assert "mlp_width = 100" in fig.axes[0].get_title()
    assert len(meshes(fig.axes[0])) == 1


def test_save_all_writes_the_population_figures_and_the_plot_command_redraws_a_saved_fit(population, tmp_path,
                                                                                          capsys):
    assert set(plot.figures_for(population)) == set(plot.POPULATION_FIGURES)
    folder = population.save(tmp_path / "fit")
    assert main(["plot", str(folder), "--out", str(tmp_path / "figures")]) == 0
    written = sorted(p.rsplit("/", 1)[1] for p in capsys.readouterr().out.split())
    assert written == sorted(f"{name}.png" for name in plot.POPULATION_FIGURES)


def test_the_report_page_of_a_population_fit_has_the_population_the_configurations_and_the_figures(population):
    page = report.render_report(population, figures={name: b"png" for name in plot.POPULATION_FIGURES})
    for section in ('id="verdict"', 'id="population"', 'id="configurations"', 'id="transition"', 'id="figures"'):
        assert section in page
    for name in population.names:
        assert name in page
    assert "B: mlp_width" in page and "B: context_length" in page
    assert page.count("<figure") == len(plot.POPULATION_FIGURES)


def test_the_demo_text_prints_the_population_parameters_and_n_star_of_every_configuration(population):
    text = format_population_report(population)
    assert "B mlp_width" in text and "B context_length" in text and "tau" in text
    for name in population.names:
        assert figures.short_name(name) in text
    table = transition_table_lines(population)
    assert len(table) == 2 + len(DIVERSITIES)
    header = table[1].split()
    assert header[0] == "D"


def test_a_fit_of_several_configurations_and_the_grid_demo_write_figures_and_report_page(population, tmp_path,
                                                                                         monkeypatch, capsys):
    # `bayesicl fit RUNS/` over the shipped grid's six configurations and `demo --task urns-grid`
    # share one output path; the fit itself is this file's fitted population (no refit).
    calls = []

    def fitted(runs, **options):
        calls.append((str(runs), options))
        return population

    monkeypatch.setattr("bayesicl.commands.population.fit_population", fitted)
    assert main(["fit", "data/runs/urns-grid", "--out", str(tmp_path / "fit"), "--chains", "2"]) == 0
    run_demo("urns-grid", tmp_path / "demo", echo=print, note=print)
    out = capsys.readouterr().out
    assert [(runs.rsplit("/", 1)[-1], o["pool"], o["num_chains"]) for runs, o in calls] == [
        ("urns-grid", "partial", 2), ("urns-grid", "partial", DEMO_SAMPLER["num_chains"])]
    assert out.count("6 configurations (context_length, mlp_width vary)") == 2
    for folder in (tmp_path / "fit", tmp_path / "demo"):
        names = {p.name for p in folder.iterdir()}
        assert {"summary.json", "configurations.csv", "transitions.csv", "report.html"} <= names
        assert {f"{name}.png" for name in plot.figures_for(population)} <= names
        page = (folder / "report.html").read_text()
        assert 'id="population"' in page and page.count("data:image/png;base64,") == len(plot.figures_for(population))
    assert "bayesicl cross-validate" in out
