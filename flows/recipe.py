"""`Recipe`: one strict pydantic model that is the YAML recipe file, the Prefect UI form and the body of
`POST /runs`.

Every section maps onto the `*Config` of the compress/ technique it drives, and the recipe validates by
building those configs (`PQIPruneConfig.__post_init__` refuses p >= q, `KDConfig` refuses T <= 0, ...),
so a bad recipe is refused before any work starts, with the field named. Unknown keys are refused
everywhere (extra="forbid"): a typo such as `temprature:` fails loudly instead of being ignored.

    recipe = Recipe.from_yaml("recipes/mnist.yaml")
    recipe.prune.to_config()          # -> PQIPruneConfig(p=0.5, q=1.0, ...)
    recipe.recipe_hash()              # sha256 of the canonical JSON; recorded on the registry run

Stages run in this order; each can be switched off with `enabled: false` (dataset and student cannot):
dataset -> teacher -> teacher_data -> distill -> prune -> quantize (one branch per variant) -> evaluate
-> export -> register (`promote` section: versions + promotion gates + alias).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecipeError(ValueError):
    """A recipe file that cannot be read or does not validate; the message names each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _build(section: str, factory, **kwargs):
    """Build a compress/ config, turning its __post_init__ error into one that names the recipe section."""
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as err:  # pydantic's error location already names the section
        raise ValueError(str(err)) from err


class DatasetParams(_Strict):
    name: Literal["mnist", "fashion_mnist", "npz"] = "mnist"
    path: str | None = Field(None, description="the .npz file when name is 'npz' (x_train, y_train, x_test, y_test)")
    n_train: int | None = Field(None, ge=1, description="labelled training samples (seeded subset); None = all")
    n_test: int | None = Field(None, ge=1, description="test samples used for evaluation; None = all")

    @model_validator(mode="after")
    def _path_matches_name(self):
        if self.name == "npz" and not self.path:
            raise ValueError("dataset.path is required when dataset.name is 'npz' (a file with x_train, "
                             "y_train, x_test, y_test)")
        if self.name != "npz" and self.path:
            raise ValueError(f"dataset.path is only for name 'npz', got name={self.name!r}; remove the path")
        return self


class ModelParams(_Strict):
    """A zoo architecture (compress/models.py); input size and classes come from the dataset."""

    arch: Literal["mlp", "mnist_cnn"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128], min_length=1,
                              description="hidden widths (mlp); the first is the dense width of mnist_cnn")
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=2, max_length=2,
                                description="conv channels (mnist_cnn only)")

    def model_spec(self, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
        """The `compress.models.build_model` spec for this architecture on inputs of `input_shape`."""
        if self.arch == "mlp":
            return {"arch": "mlp", "in_features": math.prod(input_shape), "hidden": list(self.hidden),
                    "num_classes": num_classes}
        if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
            raise ValueError(f"arch 'mnist_cnn' needs square image inputs (C, H, H), got input shape "
                             f"{tuple(input_shape)}; use arch 'mlp' for this dataset")
        return {"arch": "mnist_cnn", "channels": list(self.channels), "hidden": self.hidden[0],
                "num_classes": num_classes, "in_channels": input_shape[0], "image_size": input_shape[1]}


class TeacherTrainParams(_Strict):
    """Maps onto compress.teacher.TeacherConfig: arch auto = a CNN for square images, else an MLP."""

    arch: Literal["auto", "cnn", "mlp"] = "auto"
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=2, max_length=2)
    hidden: int = 128
    mlp_hidden: list[int] = Field(default_factory=lambda: [512, 512])
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"

    def to_config(self, seed: int = 0):
        from compress.teacher import TeacherConfig

        return _build("teacher.train", TeacherConfig, arch=self.arch, channels=tuple(self.channels),
                      hidden=self.hidden, mlp_hidden=tuple(self.mlp_hidden), epochs=self.epochs,
                      batch_size=self.batch_size, lr=self.lr, seed=seed, optimizer=self.optimizer)


class TeacherParams(_Strict):
    enabled: bool = True
    source: Literal["packaged", "train", "path"] = Field(
        "packaged", description="packaged: a teacher shipped with the install (ccexam-mnist); train: train a "
        "CNN on the dataset; path: a local safetensors export")
    name: str = Field("ccexam-mnist", description="packaged teacher name")
    path: str | None = None
    train: TeacherTrainParams = Field(default_factory=TeacherTrainParams)

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "path" and not self.path:
            raise ValueError("teacher.path is required when teacher.source is 'path'")
        if self.enabled and self.source == "train":
            self.train.to_config()
        return self


class TeacherDataParams(_Strict):
    enabled: bool = True
    n_transfer: int | None = Field(None, ge=1, description="inputs labelled by the teacher (>= dataset.n_train); "
                                   "unlabelled extra inputs cost nothing but teacher time")
    batch_size: int = Field(1024, ge=1)


class StudentParams(ModelParams):
    channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=2, max_length=2,
                                description="conv channels (mnist_cnn only)")


class DistillParams(_Strict):
    enabled: bool = True
    temperature: float = 4.0
    alpha: float = Field(0.1, description="weight of hard-label cross-entropy; 1 - alpha goes to the KD term")
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    baseline: bool = Field(False, description="also train the same student from scratch and log its metrics")

    @model_validator(mode="after")
    def _valid_config(self):
        if self.enabled:
            self.to_config()
        return self

    def to_config(self, seed: int = 0):
        from compress.distill import KDConfig

        return _build("distill", KDConfig, temperature=self.temperature, alpha=self.alpha, epochs=self.epochs,
                      batch_size=self.batch_size, lr=self.lr, seed=seed, optimizer=self.optimizer)


class PruneParams(_Strict):
    enabled: bool = True
    technique: Literal["sap", "magnitude"] = Field("sap", description="sap: PQ Index adaptive pruning "
                                                   "(Diao et al. 2023); magnitude: global magnitude baseline")
    scope: Literal["global", "layer", "neuron"] = "layer"
    p: float = 0.5
    q: float = 1.0
    eta: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9
    amount: float = Field(0.2, description="magnitude only: fraction of surviving weights pruned per round")
    rounds: int = Field(2, ge=1)
    epochs: int = Field(1, ge=0, description="fine-tune epochs per round")
    rewind: bool = False
    ignore: list[str] = Field(default_factory=list, description="module-name patterns left dense, e.g. [lm_head]")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)

    @model_validator(mode="after")
    def _valid_config(self):
        if self.enabled:
            self.to_config()
        return self

    def to_config(self):
        from compress.prune import MagnitudePruneConfig, PQIPruneConfig

        if self.technique == "sap":
            return _build("prune", PQIPruneConfig, p=self.p, q=self.q, eta=self.eta, gamma=self.gamma,
                          beta=self.beta, scope=self.scope, ignore=tuple(self.ignore))
        return _build("prune", MagnitudePruneConfig, amount=self.amount, scope=self.scope, ignore=tuple(self.ignore))


QUANT_TECHNIQUES = ("none", "int8", "nf4", "fp4")


class QuantVariant(_Strict):
    name: str = Field(..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    technique: Literal["none", "int8", "nf4", "fp4"]
    options: dict[str, Any] = Field(default_factory=dict, description="extra *Config fields, e.g. threshold")

    @model_validator(mode="after")
    def _valid_config(self):
        self.to_config()
        return self

    def to_config(self):
        if self.technique == "none":
            return None
        from compress import quantize

        factory = {"int8": quantize.Int8Config, "nf4": quantize.NF4Config, "fp4": quantize.FP4Config}[self.technique]
        return _build(f"quantize.variants[{self.name}]", factory, **self.options)


class QuantizeParams(_Strict):
    enabled: bool = True
    variants: list[QuantVariant] = Field(
        default_factory=lambda: [QuantVariant(name="int8", technique="int8"), QuantVariant(name="nf4", technique="nf4")])

    @model_validator(mode="after")
    def _unique_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"quantize.variants names must be unique, got {names}")
        if self.enabled and not self.variants:
            raise ValueError("quantize.variants is empty; list at least one variant or set enabled: false")
        return self


class EvaluateParams(_Strict):
    enabled: bool = True
    latency_batch_size: int = Field(1, ge=1)
    latency_iters: int = Field(50, ge=1)
    warmup: int = Field(5, ge=0)


class ExportParams(_Strict):
    enabled: bool = True
    sparse: bool = Field(True, description="store unquantized pruned weights in the sparse encoding")


class GateParams(_Strict):
    metric: str
    op: Literal[">=", "<=", ">", "<"] = ">="
    value: float
    relative_to: Literal["parent"] | None = Field(None, description="parent: compare metric - parent's metric")


class PromoteParams(_Strict):
    enabled: bool = True
    alias: str | None = Field("staging", description="alias set on the best variant that passes the gates")
    select_by: str = Field("accuracy", description="metric that picks the variant to promote among those passing")
    prefer: Literal["max", "min"] = Field("max", description="max: highest select_by wins (accuracy); min: lowest "
                                          "(file_bytes: the smallest variant that passes the gates)")
    gates: list[GateParams] = Field(default_factory=list)


class LLMParams(_Strict):
    """The causal-LM path (`task: causal_lm`): SmolLM2 (or a local / hub causal LM) teacher, generated
    (prompt, response) data from a corpus, a shallower Llama student distilled on it (sequence-level CE +
    token-level KD on the teacher's top-k logits), then the shared prune / quantize / evaluate / export.
    The classification sections dataset / teacher / student / distill are not used on this path."""

    teacher: str = Field("smollm2", description="'smollm2' (packaged SmolLM2-135M-Instruct), a folder or a hub id")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    corpus: str = Field("shakespeare", description="prompt source: shakespeare | kjv | a JSONL file of prompts")
    n_prompts: int = Field(64, ge=1)
    n_heldout: int = Field(16, ge=1, description="held-out corpus passages for perplexity / agreement")
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    gen_batch_size: int = 8
    top_k_logits: int = Field(8, description="teacher top-k logits stored per token for token-level KD (0: none)")
    student_layers: int = Field(4, ge=1)
    student_hidden: int | None = Field(None, description="None: the teacher's width")
    init_from_teacher: bool = True
    steps: int = Field(50, ge=1, description="distillation optimizer steps")
    batch_size: int = 4
    lr: float = 2e-4
    kd_temperature: float = 2.0
    kd_weight: float = 0.5
    max_length: int = 256

    @model_validator(mode="after")
    def _valid_configs(self):
        self.generate_config()
        self.distill_config()
        return self

    def generate_config(self, seed: int = 0):
        from compress.llm.generate import GenerateConfig

        return _build("llm", GenerateConfig, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                      top_p=self.top_p, seed=seed, batch_size=self.gen_batch_size, top_k_logits=self.top_k_logits)

    def distill_config(self, seed: int = 0):
        from compress.llm.distill import LMDistillConfig

        return _build("llm", LMDistillConfig, max_steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                      temperature=self.kd_temperature, kd_weight=self.kd_weight, max_length=self.max_length,
                      seed=seed)


class Recipe(_Strict):
    """A whole compression job. `name` is the registry model name the variants are registered under."""

    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    seed: int = 0
    task: Literal["classification", "causal_lm"] = "classification"
    dataset: DatasetParams = Field(default_factory=DatasetParams)
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    teacher_data: TeacherDataParams = Field(default_factory=TeacherDataParams)
    student: StudentParams = Field(default_factory=StudentParams)
    distill: DistillParams = Field(default_factory=DistillParams)
    prune: PruneParams = Field(default_factory=PruneParams)
    quantize: QuantizeParams = Field(default_factory=QuantizeParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    export: ExportParams = Field(default_factory=ExportParams)
    promote: PromoteParams = Field(default_factory=PromoteParams)
    llm: LLMParams | None = Field(None, description="the causal-LM path's settings (task: causal_lm)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.task == "causal_lm" and self.llm is None:
            self.llm = LLMParams()
        if self.task == "classification" and self.llm is not None:
            raise ValueError("the llm section is for task: causal_lm; remove it or set task: causal_lm")
        if self.distill.enabled and not (self.teacher.enabled and self.teacher_data.enabled):
            raise ValueError("distill needs teacher and teacher_data enabled; enable them or set "
                             "distill.enabled: false (the student then trains from scratch)")
        if self.teacher_data.enabled and not self.teacher.enabled:
            raise ValueError("teacher_data needs teacher.enabled: true")
        n_train, n_transfer = self.dataset.n_train, self.teacher_data.n_transfer
        if n_train and n_transfer and n_transfer < n_train:
            raise ValueError(f"teacher_data.n_transfer={n_transfer} must be >= dataset.n_train={n_train} "
                             "(the transfer set contains the labelled set)")
        if self.promote.enabled and not self.export.enabled:
            raise ValueError("promote (registering versions) needs export.enabled: true; a version points at "
                             "an export")
        return self

    # ----------------------------------------------------------------------------------------- i/o
    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist; pass a YAML file such as recipes/mnist.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise RecipeError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise RecipeError(f"{path} must hold a mapping of recipe fields, got {type(data).__name__}")
        dataset = data.get("dataset")
        if isinstance(dataset, dict) and isinstance(dataset.get("path"), str):
            # a relative dataset path is relative to the recipe file, so recipes work from any directory
            candidate = path.parent / dataset["path"]
            if not Path(dataset["path"]).is_absolute() and candidate.exists():
                data = {**data, "dataset": {**dataset, "path": str(candidate.resolve())}}
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> Recipe:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise RecipeError(f"{source} is invalid:\n{format_errors(err)}") from err

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def recipe_hash(self) -> str:
        """sha256 of the whole recipe (canonical JSON); recorded on the registry run."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def build_hash(self) -> str:
        """sha256 of the sections that shape the exported weights (not `promote` or `description`), so
        editing gates or the alias re-registers versions without re-exporting anything."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"promote", "description"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def format_errors(err: ValidationError) -> str:
    """One line per error: `field.path: message (got value)`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"]) or "<recipe>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (typo?); remove it or check the spelling against the recipe reference"
        got = "" if e["type"] in ("value_error", "missing") else f" (got {e.get('input')!r})"
        lines.append(f"  {loc}: {msg}{got}")
    return "\n".join(lines)
