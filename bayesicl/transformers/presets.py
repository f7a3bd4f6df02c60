"""Training recipes: YAML presets in `models/`, checked against a schema, with overrides.

A preset is a flat YAML mapping of the fields of `Recipe` (task, architecture, optimizer,
schedule, checkpoints, evaluation); the task and architecture keys (`MODEL_KEYS`) become the
recipe's `ModelConfig`, and `Recipe.to_dict` writes the same flat mapping back (a run's
config). `load_recipe` finds a preset by name (in
$BAYESICL_MODELS, then the repository's `models/` folder) or by path, applies `key=value`
overrides and validates every field; a problem is a one-line `BayesiclError` naming the file
and the field. This module does not import torch.

>>> recipe = load_recipe("urns-small", overrides=["steps=300", "learning_rate=2e-3"])
>>> recipe.steps, recipe.learning_rate, recipe.run_name(diversity=64)
(300, 0.002, 'urns-d8-T64-D0064-w256-s0')
>>> recipe.model.width, recipe.model.mlp_width
(64, 256)
>>> load_recipe("urns-small", overrides=["lr=1"])
Traceback (most recent call last):
...
bayesicl.errors.BayesiclError: --set lr=1: unknown field 'lr'; known fields: ...
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import BayesiclError
from ..families import family_spec
from .config import ModelConfig

SCHEDULES = ("constant", "inverse_sqrt")
OUTPUT_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe (docs/model.md#reference-transformers): what is trained, on what, for how long, logged how.

    The learning rate at optimizer step n (1-based) is `learning_rate · min(1, n / warmup)`
    for the "constant" schedule and `learning_rate · min(n / warmup, √(warmup / n))` for
    "inverse_sqrt" (with warmup 0: `learning_rate / √n`). The task family and the
    architecture are the `model` (a flat mapping spells them `task`, `num_dims`, … `mlp_width`).
    """

    model: ModelConfig
    # optimization
    batch_size: int = 64
    steps: int = 100_000
    learning_rate: float = 5e-4
    warmup_steps: int = 0
    schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # logging
    checkpoints: int = 100
    first_checkpoint: int = 20
    eval_sequences: int = 500
    output_dtype: str = "float32"
    zipf: float | None = None
    # execution (not part of the setting)
    seed: int = 0
    device: str = "cpu"
    #: processes that make training batches ahead of the model (None: 0 on a CPU, up to 8 with CUDA)
    data_workers: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        where = f"recipe {self.name!r}" if self.name else "recipe"
        if not isinstance(self.model, ModelConfig):
            raise BayesiclError(f"{where}: model must be a ModelConfig, got {type(self.model).__name__}")
        _check_choice(where, "schedule", self.schedule, SCHEDULES)
        _check_choice(where, "output_dtype", self.output_dtype, OUTPUT_DTYPES)
        for field in ("batch_size", "steps", "checkpoints", "first_checkpoint", "eval_sequences"):
            if getattr(self, field) < 1:
                raise BayesiclError(f"{where}: {field} must be ≥ 1, got {getattr(self, field)!r}")
        for field in ("warmup_steps", "seed"):
            if getattr(self, field) < 0:
                raise BayesiclError(f"{where}: {field} must be ≥ 0, got {getattr(self, field)!r}")
        if not self.learning_rate > 0 or not self.grad_clip > 0 or self.weight_decay < 0:
            raise BayesiclError(f"{where}: learning_rate and grad_clip must be > 0, weight_decay ≥ 0")
        if self.zipf is not None and self.zipf < 0:
            raise BayesiclError(f"{where}: zipf must be ≥ 0 or null, got {self.zipf!r}")
        if self.data_workers is not None and (isinstance(self.data_workers, bool) or self.data_workers < 0):
            raise BayesiclError(f"{where}: data_workers must be ≥ 0 or null, got {self.data_workers!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise BayesiclError(f"{where}: device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    # -- derived -------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """The task family the recipe trains on (the model's `family`)."""
        return self.model.family

    def task_params(self) -> dict[str, Any]:
        """Keyword arguments of `bayesicl.task(self.task, ...)`."""
        params = {"num_dims": self.model.num_dims, "context_length": self.model.context_length}
        if "num_labels" in {field.name for field in dataclasses.fields(family_spec(self.task).task)}:
            params["num_labels"] = self.model.num_labels
        return params

    def to_dict(self) -> dict[str, Any]:
        """The recipe as the flat JSON-able dict of a preset (stored as a run's config): the
        model's fields under their `MODEL_KEYS` names first, then the recipe's own."""
        model = dataclasses.asdict(self.model)
        flat = {key: model[name] for key, name in MODEL_KEYS.items()}
        flat.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "model")
        return flat

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (validated like `--set`)."""
        return recipe_from_mapping({**self.to_dict(), **changes}, "recipe")

    def run_name(self, diversity: int) -> str:
        """Folder name of the run at diversity D, e.g. 'urns-d8-T64-D0064-w256-s0'."""
        model = self.model
        return (f"{self.task}-d{model.num_dims}-T{model.context_length}-D{int(diversity):04d}"
                f"-w{model.mlp_width}-s{self.seed}")

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of the update that produces step `step` (1-based)."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.schedule == "inverse_sqrt":
            warm = min(warm, (max(self.warmup_steps, 1) / step) ** 0.5)
        return self.learning_rate * warm


#: The flat keys of the model's fields (a preset says `task` for the model's `family`).
MODEL_KEYS = {("task" if f.name == "family" else f.name): f.name for f in dataclasses.fields(ModelConfig)}
#: The flat schema of a preset: the model's keys, then the recipe's own fields.
FIELDS: dict[str, Any] = {**{key: f for key, f in zip(MODEL_KEYS, dataclasses.fields(ModelConfig))},
                          **{f.name: f for f in dataclasses.fields(Recipe) if f.name != "model"}}
_HINTS = {**{key: hint for key, hint in zip(MODEL_KEYS, typing.get_type_hints(ModelConfig).values())},
          **{k: v for k, v in typing.get_type_hints(Recipe).items() if k != "model"}}


def models_dirs() -> list[Path]:
    """Where presets are looked up by name: each folder of $BAYESICL_MODELS, then the
    repository's top-level `models/`."""
    extra = [Path(p) for p in os.environ.get("BAYESICL_MODELS", "").split(os.pathsep) if p]
    return [*extra, Path(__file__).resolve().parents[2] / "models"]


def find_preset(name_or_path: str | os.PathLike) -> Path:
    """The YAML file of a preset given by name ('urns-small') or by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text or path.is_file():
        if not path.is_file():
            raise BayesiclError(f"{path}: preset file not found")
        return path
    for folder in models_dirs():
        for suffix in (".yaml", ".yml"):
            if (folder / f"{text}{suffix}").is_file():
                return folder / f"{text}{suffix}"
    known = sorted({p.stem for d in models_dirs() if d.is_dir() for p in d.glob("*.y*ml")})
    raise BayesiclError(f"unknown preset {text!r}; known presets: {', '.join(known) or 'none'}")


def read_preset(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The raw mapping of a preset file and the file name (for messages)."""
    path = find_preset(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BayesiclError(f"{path}: unreadable YAML: {first}") from None
    if not isinstance(data, dict):
        raise BayesiclError(f"{path}: a preset must be a YAML mapping of field: value")
    data.setdefault("name", path.stem)
    return data, str(path)


def load_recipe(preset: str | os.PathLike, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Recipe:
    """The validated recipe of `preset` (name or path) after `overrides` ('key=value' strings
    as given to `--set`, or a mapping)."""
    data, where = read_preset(preset)
    recipe = recipe_from_mapping(data, where)
    changes = parse_overrides(overrides)
    if changes:
        recipe = recipe_from_mapping({**recipe.to_dict(), **changes}, "--set " + _describe(overrides))
    return recipe


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """'key=value' strings (values parsed as YAML scalars) or a mapping → {field: value};
    unknown fields and wrong types are reported by `recipe_from_mapping`."""
    if isinstance(overrides, Mapping):
        return dict(overrides)
    changes = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise BayesiclError(f"--set {item}: expected key=value")
        try:
            changes[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            changes[key.strip()] = value
    return changes


def recipe_from_mapping(data: Mapping[str, Any], where: str) -> Recipe:
    """Validate a mapping of fields against the schema and build the `Recipe`."""
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise BayesiclError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(FIELDS)}")
    missing = [name for name, f in FIELDS.items()
               if name not in data and f.default is dataclasses.MISSING]
    if missing:
        raise BayesiclError(f"{where}: missing required field {missing[0]!r}")
    values = {key: _coerce(where, key, value) for key, value in data.items()}
    model = {MODEL_KEYS[key]: values.pop(key) for key in list(values) if key in MODEL_KEYS}
    try:
        return Recipe(model=ModelConfig(**model), **values)
    except BayesiclError as error:
        raise BayesiclError(f"{where}: {error}") from None


def _coerce(where: str, key: str, value: Any) -> Any:
    hint = _HINTS[key]
    optional = type(None) in typing.get_args(hint)
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    if value is None and optional:
        return None
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    if base is str and isinstance(value, str):
        return value
    want = {int: "an integer", float: "a number", str: "a string"}[base] + (" or null" if optional else "")
    raise BayesiclError(f"{where}: field {key!r} must be {want}, got {value!r}")


def _check_choice(where: str, field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BayesiclError(f"{where}: {field} must be one of {list(choices)}, got {value!r}")


def _describe(overrides: Sequence[str] | Mapping[str, Any]) -> str:
    if isinstance(overrides, Mapping):
        return " ".join(f"{k}={v}" for k, v in overrides.items())
    return " ".join(str(o) for o in overrides)
