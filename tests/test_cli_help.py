"""Every flag of every verb says what it does and what it defaults to.

The test walks the argparse parser that `bayesicl` runs (train and sweep included: the test
environment has torch) and reads each flag's help as `--help` prints it.
"""

import argparse

import pytest

from bayesicl.cli import build_parser

#: Actions that take no value: their default is "off", which needs no statement.
SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
            argparse._VersionAction, argparse._CountAction)


def verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{"bayesicl": parser, "bayesicl fit": fit's parser, ...}."""
    out = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def printed_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of `action` as `--help` prints it (%(default)s and the like expanded)."""
    return parser._get_formatter()._expand_help(action) if action.help else ""


PARSERS = verbs(build_parser())
FLAGS = [(name, action) for name, parser in PARSERS.items() for action in parser._actions
         if not isinstance(action, argparse._SubParsersAction)]


def test_the_parser_has_every_verb_and_the_walk_sees_their_flags():
    assert {"bayesicl", "demo", "train", "sweep", "fit", "plot", "report", "check"} <= {
        name.split()[-1] for name in PARSERS}
    assert len(FLAGS) > 40


@pytest.mark.parametrize("name, action", FLAGS, ids=[f"{n} {a.dest}" for n, a in FLAGS])
def test_every_argument_has_help(name, action):
    assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name, action", [(n, a) for n, a in FLAGS if a.option_strings and not isinstance(a, SWITCHES)],
                         ids=[f"{n} {a.dest}" for n, a in FLAGS if a.option_strings and not isinstance(a, SWITCHES)])
def test_every_flag_that_takes_a_value_shows_its_default(name, action):
    text = printed_help(PARSERS[name], action)
    flag = "/".join(action.option_strings)
    if action.required:                        # no default to show: the help says so instead
        assert "required" in text, f"{name} {flag}: a required flag whose help does not say so: {text!r}"
        return
    assert "default" in text, f"{name} {flag}: help does not state the default: {text!r}"
    if action.default is not None and action.default != [] and action.default is not argparse.SUPPRESS:
        shown = action.default if isinstance(action.default, (list, tuple)) else [action.default]
        for value in shown:
            assert str(value) in text, f"{name} {flag}: default {action.default!r} not shown in {text!r}"


def test_fit_out_defaults_to_a_folder_beside_the_runs(tmp_path):
    from bayesicl.commands.fit import default_out

    args = build_parser().parse_args(["fit", str(tmp_path / "runs")])
    assert args.out is None
    assert default_out(str(tmp_path / "runs") + "/") == tmp_path / "runs-fit"


def test_train_without_a_preset_on_a_cpu_takes_the_small_preset_and_says_so(tmp_path, monkeypatch, capsys):
    from bayesicl.cli import main
    from bayesicl.transformers import train

    seen = {}
    monkeypatch.setattr(train, "train_runs", lambda recipe, *a, **k: seen.setdefault("recipe", recipe) and [])
    assert main(["train", "urns", "-D", "4", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    assert seen["recipe"].name == "urns-small" and seen["recipe"].steps < 100_000
    assert "no --preset given" in capsys.readouterr().err


def test_a_warmup_that_takes_most_of_the_training_is_warned_about(tmp_path, monkeypatch, capsys):
    from bayesicl.cli import main
    from bayesicl.transformers import train
    from bayesicl.transformers.presets import load_recipe

    warmup = load_recipe("urns-small").warmup_steps
    monkeypatch.setattr(train, "train_runs", lambda *a, **k: [])
    assert main(["train", "urns", "-D", "4", "--out", str(tmp_path), "--preset", "urns-small",
                 "--steps", str(warmup + 100), "--quiet"]) == 0
    assert f"warm-up takes {warmup} of the {warmup + 100} training steps" in capsys.readouterr().err
    assert main(["train", "urns", "-D", "4", "--out", str(tmp_path), "--preset", "urns-small",
                 "--steps", str(4 * warmup), "--quiet"]) == 0
    assert "warm-up" not in capsys.readouterr().err


def test_sweep_steps_and_set_reach_every_job_after_the_configs_own_set(tmp_path, monkeypatch):
    from bayesicl.cli import main
    from bayesicl.transformers import sweep as sweeping

    config = tmp_path / "sweep.yaml"
    config.write_text("preset: urns-small\ndiversities: [2, 4]\nseeds: [0, 1]\nset: {width: 32, batch_size: 8}\n")
    seen = {}

    def fake_sweep(config, out, **kwargs):
        seen["jobs"] = sweeping.sweep_jobs(config)
        return {"runs": [], "trained": 0, "skipped": 0}

    monkeypatch.setattr(sweeping, "sweep", fake_sweep)
    assert main(["sweep", str(config), "--out", str(tmp_path / "runs"), "--steps", "30",
                 "--set", "width=16", "--set", "checkpoints=3", "--quiet"]) == 0
    recipes = [job.recipe for job in seen["jobs"]]
    assert len(recipes) == 4
    assert {(r.steps, r.model.width, r.checkpoints, r.batch_size) for r in recipes} == {(30, 16, 3, 8)}


def test_the_demo_refuses_to_overwrite_an_earlier_demo_without_force(tmp_path, capsys):
    from bayesicl.cli import main

    earlier = tmp_path / "demo-out" / "urns"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    assert main(["demo", "--out", str(earlier)]) == 1
    err = capsys.readouterr().err.strip()
    assert "--force" in err and "\n" not in err
    assert (earlier / "summary.json").read_text() == "{}"
    assert build_parser().parse_args(["demo", "--task", "regression"]).out is None   # → demo-out/regression
