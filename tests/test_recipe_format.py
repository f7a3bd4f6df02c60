"""A `Recipe` holds a `ModelConfig`; the flat recipe format on disk (presets, a run's config,
model.json's recipe) is unchanged, so files written before still load and write back the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayesicl.errors import BayesiclError
from bayesicl.transformers.config import ModelConfig
from bayesicl.transformers.presets import load_recipe, recipe_from_mapping

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ("num_dims", "context_length", "num_labels", "num_layers", "num_heads", "width", "mlp_width")
#: A run's config as bayesicl wrote it before `data_workers` existed (data/runs/urns, 2025).
OLD_CONFIG = {"batch_size": 64, "checkpoints": 26, "context_length": 64, "device": "cpu", "eval_sequences": 64,
              "first_checkpoint": 20, "grad_clip": 1.0, "learning_rate": 0.001, "mlp_width": 256, "num_dims": 8,
              "num_heads": 1, "num_labels": 2, "num_layers": 1, "output_dtype": "float16", "schedule": "constant",
              "seed": 0, "steps": 6000, "task": "urns", "warmup_steps": 500, "weight_decay": 0.0, "width": 64,
              "zipf": None}


def test_an_old_flat_run_config_loads_with_its_architecture_in_the_model_config():
    recipe = recipe_from_mapping(OLD_CONFIG, "old run.json")
    assert recipe.model == ModelConfig("urns", **{k: OLD_CONFIG[k] for k in ARCHITECTURE})
    assert recipe.task == "urns" and recipe.steps == 6000 and recipe.data_workers is None
    written = recipe.to_dict()
    assert written.pop("name") == "" and written.pop("data_workers") is None
    assert written == OLD_CONFIG
    assert list(recipe.to_dict())[:8] == ["task", *ARCHITECTURE]      # the order runs were written in


def test_every_shipped_runs_config_round_trips_through_a_recipe():
    paths = sorted((ROOT / "data" / "runs").glob("*/*/run.json"))
    assert paths
    for path in paths:
        config = json.loads(path.read_text())["config"]
        if config.get("task") not in ("urns", "regression", "classification"):
            continue                          # families without a reference transformer
        recipe = recipe_from_mapping(config, str(path))
        assert recipe.model.family == config["task"]
        assert all(getattr(recipe.model, k) == config[k] for k in ARCHITECTURE), path
        written = {k: v for k, v in recipe.to_dict().items() if k in config}
        assert written == config, path


def test_an_architecture_error_names_the_file_and_the_field():
    with pytest.raises(BayesiclError, match="my.yaml: .*width 66 is not divisible by num_heads 4"):
        recipe_from_mapping({**OLD_CONFIG, "width": 66, "num_heads": 4}, "my.yaml")
    with pytest.raises(BayesiclError, match="unknown field 'model'"):
        recipe_from_mapping({**OLD_CONFIG, "model": {}}, "my.yaml")


def test_overrides_of_architecture_fields_change_the_model_config():
    recipe = load_recipe("urns-small", overrides=["mlp_width=512", "num_heads=2"])
    assert (recipe.model.mlp_width, recipe.model.num_heads) == (512, 2)
    assert recipe.replace(width=32).model.width == 32


def test_a_recipe_and_its_model_config_import_without_torch():
    code = ("import sys, bayesicl.transformers.presets, bayesicl.transformers.config; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
