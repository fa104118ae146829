"""`Recipe`: the YAML recipe file, the Prefect UI form and the body of `POST /runs`.

A recipe is a discriminated union keyed on `task`: one pydantic model per registered task
(compress/tasks/), made of that task's own sections plus the shared ones defined here (name, seed,
quantize, evaluate, export, promote). A field that the recipe's task does not use is refused, never
silently ignored, and so is every unknown key (extra="forbid"): `temprature:` fails loudly.
A quantization variant is a union too, keyed on `technique`: its `options` are the registered
technique's own `*Config` (compress/techniques.py), validated by that config's __post_init__.

    recipe = Recipe.from_yaml("recipes/mnist.yaml")    # -> a ClassificationRecipe
    recipe.prune.to_config()                           # -> PQIPruneConfig(p=0.5, q=1.0, ...)
    recipe.recipe_hash()                               # the registry run's hash (one definition)

Stages run in this order; each can be switched off with `enabled: false` (dataset and student cannot):
dataset -> teacher -> teacher_data -> distill -> prune -> quantize (one branch per variant) -> evaluate
-> export -> register (`promote` section: versions + promotion gates + alias).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model, model_validator

from compress.tasks import Section, load_tasks
from compress.techniques import QUANTIZERS, load_all
from flows.form import FormUnion
from registry.repository.gates import Gate
from registry.repository.runs import recipe_hash as registry_recipe_hash


class RecipeError(ValueError):
    """A recipe file that cannot be read or does not validate; the message names each bad field."""


# ------------------------------------------------------------------------------ variants (techniques)
class _VariantBase(Section):
    name: str = Field(..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="the variant's name: its export folder and registry version description")

    def to_config(self):
        """The technique's `*Config` (None for `none`)."""
        return getattr(self, "options", None)

    def options_dict(self) -> dict[str, Any]:
        options = self.to_config()
        return options.to_dict() if options is not None else {}


def _variant_model(name: str):
    technique = QUANTIZERS[name]
    fields: dict[str, Any] = {"technique": (Literal[name], Field(..., description=technique.description))}
    if technique.config is not None:
        fields["options"] = (technique.config, Field(default_factory=technique.config,
                                                     description=f"{technique.config.__name__} fields"))
    cls_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Variant"
    return _module_attribute(create_model(cls_name, __base__=_VariantBase, __module__=__name__, **fields))


def _module_attribute(model):
    """Make a generated model importable as `flows.recipe.<Name>`, so pickle (Dask, process pools) sends
    it by reference; pickled by value, a pydantic model class fails to load (KeyError: 'type')."""
    globals()[model.__name__] = model
    return model


def _variant_union():
    load_all()
    models = {name: _variant_model(name) for name in sorted(QUANTIZERS)}
    tagged = tuple(Annotated[model, Tag(name)] for name, model in models.items())
    # FormUnion(tag=...): in the Prefect form each variant is one typed entry with a technique dropdown
    return Annotated[Union[tagged], Discriminator("technique"),  # noqa: UP007
                     FormUnion(tag="technique", members=list(models.values()))]


QuantVariant = _variant_union()
_VARIANT = TypeAdapter(QuantVariant)


def make_variant(name: str, technique: str, options: dict[str, Any] | None = None):
    return _VARIANT.validate_python({"name": name, "technique": technique, **({"options": options} if options else {})})


# ---------------------------------------------------------------------------------- shared sections
class QuantizeParams(Section):
    enabled: bool = Field(True, description="false: one unquantized `fp32` variant")
    variants: list[QuantVariant] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [make_variant("int8", "int8"), make_variant("nf4", "nf4")],
        description="one exported variant each: a name, a registered technique and its options")

    @model_validator(mode="after")
    def _unique_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"quantize.variants names must be unique, got {names}")
        if self.enabled and not self.variants:
            raise ValueError("quantize.variants is empty; list at least one variant or set enabled: false")
        return self

    def active(self) -> list:
        return list(self.variants) if self.enabled else [make_variant("fp32", "none")]


class EvaluateParams(Section):
    enabled: bool = Field(True, description="evaluate every variant (quality, size, latency)")
    latency_batch_size: int = Field(1, ge=1, description="inputs per forward pass when timing latency")
    latency_iters: int = Field(50, ge=1, description="timed forward passes (after the warm-up)")
    warmup: int = Field(5, ge=0, description="untimed forward passes before timing")


class ExportParams(Section):
    enabled: bool = Field(True, description="write the shipped exports (needed to register versions)")
    sparse: bool = Field(True, description="store unquantized pruned weights in the sparse encoding")


class PromoteParams(Section):
    enabled: bool = Field(True, description="register one version per variant and apply the gates")
    alias: str | None = Field("staging", description="alias set on the best variant that passes the gates")
    select_by: str = Field("accuracy", description="metric that picks the variant to promote among those passing")
    prefer: Literal["max", "min"] = Field("max", description="max: highest select_by wins (accuracy); min: lowest "
                                          "(file_bytes: the smallest variant that passes the gates)")
    gates: list[Gate] = Field(default_factory=list, description="every gate must pass for a variant to be promoted")


class RecipeBase(Section):
    """What every recipe has; each task's recipe model adds its own sections and `task: Literal[name]`."""

    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="the registry model name the variants are registered under")
    description: str | None = Field(None, description="free text shown on the model and its versions")
    seed: int = Field(0, description="seeds data subsets, initialisation and training order")
    task: str
    quantize: QuantizeParams = Field(default_factory=QuantizeParams, description="the variants to export")
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams, description="how variants are measured")
    export: ExportParams = Field(default_factory=ExportParams, description="the shipped exports")
    promote: PromoteParams = Field(default_factory=PromoteParams, description="versions, gates and the alias")

    @model_validator(mode="after")
    def _promote_needs_export(self):
        if self.promote.enabled and not self.export.enabled:
            raise ValueError("promote (registering versions) needs export.enabled: true; a version points at "
                             "an export")
        return self

    def recipe_hash(self) -> str:
        """sha256 of the whole recipe: the same function and bytes as the registry run's `recipe_hash`."""
        return registry_recipe_hash(self.model_dump(mode="json"))

    def build_hash(self) -> str:
        """sha256 of the sections that shape the exported weights (not `promote` or `description`), so
        editing gates or the alias re-registers versions without re-exporting anything."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"promote", "description"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _recipe_model(task):
    cls_name = "".join(part.capitalize() for part in task.name.split("_")) + "Recipe"
    return _module_attribute(create_model(
        cls_name, __base__=(RecipeBase, task.sections), __module__=__name__,
        __doc__=f"A `task: {task.name}` recipe. {task.sections.__doc__ or ''}".strip(),
        task=(Literal[task.name], Field(task.name, description="the kind of model (compress/tasks/)"))))


def _titled(model, title: str):
    model.model_config["title"] = title  # the button that picks this task's form in the Prefect UI
    model.model_rebuild(force=True)
    return model


DEFAULT_TASK = "classification"
RECIPE_MODELS = {name: _titled(_recipe_model(task), name) for name, task in sorted(load_tasks().items())}


def _task_of(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("task", DEFAULT_TASK)
    return getattr(value, "task", DEFAULT_TASK)


AnyRecipe = Annotated[Union[tuple(Annotated[m, Tag(n)] for n, m in RECIPE_MODELS.items())],  # noqa: UP007
                      Discriminator(_task_of), FormUnion()]  # FormUnion: one form per task in the Prefect UI
_RECIPE = TypeAdapter(AnyRecipe)


class Recipe:
    """Reads and validates recipes into the model of their task (`Recipe.from_yaml(path)`)."""

    models = RECIPE_MODELS

    @staticmethod
    def model_validate(data: Any) -> RecipeBase:
        return _RECIPE.validate_python(data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RecipeBase:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist; pass a YAML file such as recipes/mnist.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise RecipeError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise RecipeError(f"{path} must hold a mapping of recipe fields, got {type(data).__name__}")
        return cls.from_dict(_resolve_paths(data, path.parent), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> RecipeBase:
        task = _task_of(data) if isinstance(data, dict) else None
        if task is not None and task not in RECIPE_MODELS:
            raise RecipeError(f"{source} is invalid:\n  task: unknown task {task!r}; expected one of "
                              f"{sorted(RECIPE_MODELS)}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise RecipeError(f"{source} is invalid:\n{format_errors(err)}") from err

    @staticmethod
    def json_schema() -> dict[str, Any]:
        return _RECIPE.json_schema()


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The task's path fields (its `path_fields`, e.g. "dataset.path") given relative to the recipe file
    are made absolute when that file exists, so recipes work from any directory."""
    task = RECIPE_MODELS.get(_task_of(data))
    fields = getattr(load_tasks().get(_task_of(data)), "path_fields", ()) if task is not None else ()
    out = json.loads(json.dumps(data, default=str))
    for dotted in fields:
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            node[leaf] = str((base / value).resolve())
    return out


def format_errors(err: ValidationError) -> str:
    """One line per error: `field.path: message (got value)`; union branch tags are left out."""
    lines = []
    tags = set(RECIPE_MODELS) | set(QUANTIZERS)
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"] if str(part) not in tags) or "<recipe>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            field = str(e.get("ctx", {}).get("discriminator", "")).strip("'\"")
            loc = f"{loc}.{field}" if field else loc
            msg = (f"unknown {field or 'value'} {e['ctx'].get('tag')!r}; expected one of "
                   f"{e['ctx'].get('expected_tags')}")
            lines.append(f"  {loc}: {msg}")
            continue
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            msg = "unknown field (typo?), or one this task or technique does not use; remove it or check the spelling"
        got = "" if e["type"] in ("value_error", "missing") else f" (got {e.get('input')!r})"
        lines.append(f"  {loc}: {msg}{got}")
    return "\n".join(lines)
