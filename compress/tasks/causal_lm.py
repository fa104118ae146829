"""The causal-LM task (`task: causal_lm`): a SmolLM2 (or local / hub) causal-LM teacher answers prompts
built from a corpus; a shallower Llama student is distilled on those answers (sequence-level CE +
token-level KD on the teacher's top-k logits); one-shot pruning; quantized HF-layout variants evaluated
on held-out corpus passages (perplexity, agreement and KL with the teacher, tokens/s).

Artifacts between stages: the dataset is a JSON manifest holding the prompts and held-out passages; the
teacher is a JSON manifest naming its source (the packaged SmolLM2 is converted once and cached by
compress.llm); teacher data is the generated JSONL; models between stages are HF folders; variants are
compress.export HF-layout exports.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compress.prune.structured_llm import StructuredLLMPruneConfig
from compress.tasks.base import Output, Section, build_config, register_task
from compress.tasks.sections import PruneParams

_SHARED = ("compress.export", "compress.evaluate.system", "compress.evaluate.lm", "compress.techniques",
           "compress.tasks.base", "compress.tasks.causal_lm", "compress.llm.teacher", "compress.quantize.api")


class LLMParams(Section):
    """The causal-LM path (`task: causal_lm`): SmolLM2 (or a local / hub causal LM) teacher, generated
    (prompt, response) data from a corpus, a student made from the teacher (by default Minitron-style:
    structured pruning of MLP channels and heads by calibration activations, then recovery distillation
    from the unpruned teacher's logits over the generated data and corpus text), then prune / quantize /
    evaluate / export."""

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
    student: Literal["pruned", "first_layers"] = Field(
        "pruned", description="pruned: the teacher structurally pruned (student_pruning) then distilled; "
        "first_layers: the teacher's first student_layers layers (perplexity in the millions before training "
        "on SmolLM2, see bench/results/llm_prune.md)")
    student_pruning: StructuredLLMPruneConfig = Field(
        default_factory=StructuredLLMPruneConfig, description="structured-llm options: target (fraction of "
        "non-embedding parameters removed), importance (activation | magnitude), ratio (uniform | pqi), heads")
    n_calibration: int = Field(16, ge=1, description="corpus passages whose activations rank channels and heads")
    calibration_length: int = Field(128, ge=8, description="tokens per calibration passage")
    n_corpus_passages: int = Field(256, ge=0, description="corpus passages added to the distillation data")
    freeze_embeddings: bool = Field(True, description="keep the (tied) embeddings fixed while distilling")
    student_layers: int = Field(4, ge=1, description="first_layers only: decoder layers kept")
    student_hidden: int | None = Field(None, description="first_layers only: None = the teacher's width")
    init_from_teacher: bool = Field(True, description="first_layers only: copy the teacher's layers")
    steps: int = Field(50, ge=1, description="distillation optimizer steps")
    batch_size: int = Field(4, ge=1, description="sequences per distillation step")
    lr: float = Field(2e-4, gt=0, description="distillation learning rate")
    kd_source: Literal["teacher", "topk"] = Field(
        "topk", description="teacher: full logits of the live teacher (recovers pruned students); topk: the "
        "top-k logits stored with the generated data")
    kd_temperature: float = Field(2.0, gt=0, description="KD softmax temperature")
    kd_weight: float = Field(0.5, ge=0, le=1, description="0: sequence cross-entropy only, 1: KD only")
    train_max_length: int | None = Field(None, ge=8, description="tokens per distillation sequence (None: max_length)")
    max_length: int = Field(256, ge=8, description="tokens per held-out passage when evaluating")

    @model_validator(mode="after")
    def _valid_configs(self):
        self.generate_config()
        self.distill_config()
        return self

    def generate_config(self, seed: int = 0):
        from compress.llm.generate import GenerateConfig

        return build_config("llm", GenerateConfig, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                      top_p=self.top_p, seed=seed, batch_size=self.gen_batch_size, top_k_logits=self.top_k_logits)

    def distill_config(self, seed: int = 0):
        from compress.llm.distill import LMDistillConfig

        return build_config("llm", LMDistillConfig, max_steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                            temperature=self.kd_temperature, kd_weight=self.kd_weight, kd_source=self.kd_source,
                            max_length=self.train_max_length or self.max_length, seed=seed,
                            warmup_steps=min(2, self.steps - 1))


class LLMPruneParams(PruneParams):
    """One-shot unstructured pruning rounds (no fine-tuning on this path)."""


class CalibrationParams(Section):
    """Calibration data for techniques that need it (gptq): corpus passages disjoint from the held-out ones."""

    n_samples: int = Field(32, ge=1, description="calibration sequences")
    seq_len: int = Field(256, ge=16, description="tokens per calibration sequence")


class GGUFParams(Section):
    """GGUF files (llama.cpp, Ollama) written into the exports of the named variants."""

    types: list[Literal["F16", "Q8_0", "Q4_0"]] = Field(default_factory=list, description="GGUF types to write; "
                                                         "Q4_0 of a symmetric group-32 gptq variant keeps its codes")
    variants: list[str] = Field(default_factory=list, description="the variants (float or gptq) that get them")


class CausalLMSections(Section):
    """The sections of `task: causal_lm`."""

    llm: LLMParams = Field(default_factory=LLMParams, description="teacher, corpus, generation and the student")
    prune: LLMPruneParams = Field(default_factory=LLMPruneParams, description="pruning of the distilled student")
    calibration: CalibrationParams = Field(default_factory=CalibrationParams,
                                           description="calibration data of calibrated techniques (gptq)")
    gguf: GGUFParams = Field(default_factory=GGUFParams, description="GGUF files beside the safetensors exports")

    @model_validator(mode="after")
    def _gguf_variants_exist(self):
        names = {v.name for v in getattr(getattr(self, "quantize", None), "variants", [])}
        unknown = [n for n in self.gguf.variants if names and n not in names]
        if unknown:
            raise ValueError(f"gguf.variants names {unknown}, which quantize.variants lacks ({sorted(names)})")
        if self.gguf.types and not self.gguf.variants:
            raise ValueError("gguf.types is set but gguf.variants is empty; name the variants to write GGUF for")
        return self


@functools.lru_cache(maxsize=2)
def _texts(dataset: Path) -> dict[str, list[str]]:
    return json.loads(Path(dataset).read_text())


@functools.lru_cache(maxsize=1)
def load_teacher(teacher: Path):
    from compress.llm.teacher import load_causal_lm

    meta = json.loads(Path(teacher).read_text())
    return load_causal_lm(meta["source"], dtype=meta["dtype"])


def save_hf(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def load_hf(folder: Path):
    from compress.llm.teacher import load_causal_lm

    return load_causal_lm(str(folder))


def _corpus_texts(recipe, dataset: Path, n: int, *, seed_offset: int) -> list[str]:
    """`n` corpus passages that are not held out (their own seed); the prompts when the corpus is a file."""
    from compress.llm.corpus import SOURCES, corpus_passages

    texts = _texts(dataset)
    if recipe.llm.corpus not in SOURCES:
        return list(texts["prompts"])[:n]
    heldout = set(texts["heldout"])
    return [t for t in corpus_passages(recipe.llm.corpus, n, seed=recipe.seed + seed_offset) if t not in heldout]


def lm_quality(model, tokenizer, dataset: Path, teacher: Path | None, recipe) -> dict[str, float]:
    from compress.evaluate.lm import lm_metrics

    reference = load_teacher(teacher)[0] if teacher is not None else None
    metrics = lm_metrics(model, tokenizer, _texts(dataset)["heldout"], reference, max_length=recipe.llm.max_length,
                         max_new_tokens=8)
    return {k: float(v) for k, v in metrics.items()}


class CausalLM:
    name = "causal_lm"
    sections = CausalLMSections
    path_fields = ("llm.teacher", "llm.corpus")  # resolved against the recipe file's folder
    parallel_variants = False  # transformers model loading is not thread-safe (see flows/flow.py)
    sources = {
        "dataset": ("compress.llm.corpus", *_SHARED),
        "teacher": _SHARED,
        "teacher_data": ("compress.llm.generate", *_SHARED),
        "distill": ("compress.llm.distill", "compress.llm.student", "compress.llm.corpus",
                    "compress.prune.structured_llm", *_SHARED),
        "prune": ("compress.prune", *_SHARED),
        "quantize": ("compress.llm.corpus", "compress.assets", *_SHARED),
        "evaluate": _SHARED,
        "export": ("compress.llm.corpus", "compress.assets", *_SHARED),
    }

    def stage_params(self, stage: str, recipe) -> dict[str, Any]:
        p, seed = recipe.llm, {"seed": recipe.seed}
        if stage == "dataset":
            return {**p.model_dump(include={"corpus", "n_prompts", "n_heldout"}), **seed}
        if stage == "teacher":
            return p.model_dump(include={"teacher", "dtype"})
        if stage in ("teacher_data", "distill"):
            return {**p.model_dump(), **seed}
        if stage == "prune":
            return {**recipe.prune.model_dump(), **seed, "llm": p.model_dump()}
        if stage == "quantize":
            return {"calibration": recipe.calibration.model_dump()}
        if stage == "export":
            return {"calibration": recipe.calibration.model_dump(), "gguf": recipe.gguf.model_dump()}
        if stage == "evaluate":
            return {**recipe.evaluate.model_dump(), "max_length": p.max_length}
        raise KeyError(f"unknown stage {stage!r}")

    def enabled(self, stage: str, recipe) -> bool:
        return recipe.prune.enabled if stage == "prune" else stage != "evaluate" or recipe.evaluate.enabled

    def dataset(self, recipe, workdir: Path) -> Output:
        from compress.llm.corpus import SOURCES, corpus_passages, make_prompts

        p = recipe.llm
        prompts = make_prompts(p.corpus, p.n_prompts, seed=recipe.seed)
        source = p.corpus if p.corpus in SOURCES else "shakespeare"
        heldout = corpus_passages(source, p.n_heldout, seed=recipe.seed + 10_000)
        path = workdir / "corpus.json"
        path.write_text(json.dumps({"task": self.name, "corpus": p.corpus, "seed": recipe.seed, "prompts": prompts,
                                    "heldout": heldout}, indent=1))
        return Output(path, "corpus+json", kind="dataset", metadata={"task": self.name, "corpus": p.corpus})

    def teacher(self, recipe, dataset: Path, workdir: Path) -> Output:
        path = workdir / "teacher.json"
        meta = {"source": recipe.llm.teacher, "dtype": recipe.llm.dtype}
        path.write_text(json.dumps(meta))
        return Output(path, "hf-source+json", kind="teacher", metadata=meta)

    def teacher_data(self, recipe, dataset: Path, teacher: Path, workdir: Path) -> Output:
        from compress.llm.generate import generate_dataset

        model, tokenizer = load_teacher(teacher)
        path = generate_dataset(model, tokenizer, _texts(dataset)["prompts"], workdir / "teacher_data.jsonl",
                                config=recipe.llm.generate_config(recipe.seed), teacher_name=recipe.llm.teacher)
        return Output(path, "jsonl", kind="dataset")

    def distill(self, recipe, dataset: Path, teacher_data: Path | None, teacher: Path | None,
                workdir: Path) -> Output:
        """The student (pruned from the teacher, or its first layers), distilled from the teacher on the
        generated data (and corpus text for a pruned student)."""
        from compress.llm.distill import distill_lm
        from compress.llm.student import calibration_ids, make_student, pruned_student

        if teacher_data is None or teacher is None:
            raise ValueError("the causal-LM student is distilled on teacher-generated data; it needs the teacher "
                             "and teacher_data stages")
        p = recipe.llm
        reference, tokenizer = load_teacher(teacher)
        data: list[Path] = [teacher_data]
        if p.student == "pruned":
            calibration = _corpus_texts(recipe, dataset, p.n_calibration, seed_offset=30_000)
            student = pruned_student(reference, calibration_ids(tokenizer, calibration, max_length=p.calibration_length),
                                     p.student_pruning)
            if p.n_corpus_passages:
                corpus = workdir / "corpus.jsonl"
                corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                          _corpus_texts(recipe, dataset, p.n_corpus_passages, seed_offset=40_000)))
                data.append(corpus)
        else:
            student = make_student(reference, num_layers=p.student_layers, hidden_size=p.student_hidden,
                                   init_from_teacher=p.init_from_teacher, seed=recipe.seed)
        if p.freeze_embeddings:
            student.get_input_embeddings().requires_grad_(False)
        report = distill_lm(student, tokenizer, data, p.distill_config(recipe.seed),
                            teacher=reference if p.kd_source == "teacher" else None)
        student.eval()
        from compress.evaluate.lm import perplexity

        metrics = {**lm_quality(student, tokenizer, dataset, teacher, recipe),
                   "distill_tokens": float(report.get("tokens", 0)), "distill_seconds": float(report.get("seconds", 0)),
                   "teacher_perplexity": float(perplexity(reference, tokenizer, _texts(dataset)["heldout"],
                                                          max_length=p.max_length))}
        metrics["perplexity_vs_teacher"] = metrics["perplexity"] / metrics["teacher_perplexity"]
        return Output(save_hf(student, tokenizer, workdir / "student"), "hf", metrics=metrics,
                      extra={"metrics": metrics})

    def prune(self, recipe, dataset: Path, checkpoint: Path, teacher: Path | None, workdir: Path) -> Output:
        """`prune.rounds` one-shot rounds of the configured pruning (no fine-tuning on this path)."""
        from compress.prune import prune_

        model, tokenizer = load_hf(checkpoint)
        masks, report = None, None
        for _ in range(recipe.prune.rounds):
            report = prune_(model, recipe.prune.to_config(), masks)
            masks = report.masks
        metrics = {**lm_quality(model, tokenizer, dataset, teacher, recipe),
                   "retained_fraction": report.retained_fraction}
        return Output(save_hf(model, tokenizer, workdir / "pruned"), "hf", metrics=metrics, extra={"metrics": metrics})

    def _write_export(self, recipe, variant, checkpoint: Path, dest: Path, dataset: Path | None, *,
                      metrics=None, lineage=None, overwrite=False) -> Path:
        from compress.export import export_model
        from compress.quantize import load_quantized_hf
        from compress.techniques import quantizer

        technique, config = quantizer(variant.technique), variant.to_config()
        if config is not None and technique.hf_quantization_config is not None:
            model, tokenizer = load_quantized_hf(str(checkpoint), config)
        else:
            model, tokenizer = load_hf(checkpoint)
            calibration = self.calibration(recipe, tokenizer, dataset) if technique.needs_calibration else None
            model = technique.apply(model, config, calibration)
        meta = {"variant": variant.name, "technique": variant.technique}
        extra = None
        if metrics is not None:
            meta |= {"recipe": recipe.name, "recipe_hash": recipe.build_hash()}
            if variant.name in recipe.gguf.variants and recipe.gguf.types:
                extra = self._gguf_writer(recipe, variant, tokenizer)
        result = export_model(model, dest, metadata=meta, metrics=metrics or {}, lineage=lineage or [],
                              tokenizer=tokenizer, reproduce=f"shrinkwrap run recipe.yaml  # recipe {recipe.name!r}",
                              overwrite=overwrite, extra_files=extra)
        return Path(result.path)

    def _gguf_writer(self, recipe, variant, tokenizer):
        """Writes `<variant>-<type>.gguf` from the saved HF layout (tokenizer fields from the teacher's GGUF
        when the teacher is the packaged SmolLM2)."""
        from compress import assets
        from compress.export.gguf import export_gguf

        teacher_gguf = assets.smollm2_gguf() if recipe.llm.teacher == "smollm2" else None

        def write(folder: Path) -> None:
            for qtype in recipe.gguf.types:
                export_gguf(folder, tokenizer, folder / f"{variant.name}-{qtype}.gguf", qtype,
                            tokenizer_gguf=teacher_gguf, name=f"{recipe.name}-{variant.name}")
        return write

    def calibration(self, recipe, tokenizer, dataset: Path | None) -> list:
        """`calibration.n_samples` token windows of `calibration.seq_len` from corpus passages that the
        held-out set does not contain (their own seed), for techniques that need calibration data."""
        from compress.quantize.calibrated import calibration_batches

        if dataset is None:
            raise ValueError("a calibrated technique needs the dataset (corpus passages) as calibration data")
        c = recipe.calibration
        texts = _corpus_texts(recipe, dataset, 4 * c.n_samples, seed_offset=20_000) + _texts(dataset)["prompts"]
        return calibration_batches(tokenizer, texts, c.n_samples, c.seq_len)

    def quantize(self, recipe, variant, checkpoint: Path, dataset: Path, workdir: Path) -> Output:
        path = self._write_export(recipe, variant, checkpoint, workdir / variant.name, dataset)
        return Output(path, f"export-{variant.technique}", metadata={"variant": variant.name,
                                                                     "technique": variant.technique})

    def evaluate(self, recipe, export: Path, dataset: Path, teacher: Path | None) -> dict[str, float]:
        from compress.evaluate.system import file_bytes
        from compress.export import load_export
        from compress.llm.teacher import load_tokenizer

        model = load_export(export)
        metrics = lm_quality(model, load_tokenizer(str(export)), dataset, teacher, recipe)
        metrics["file_bytes"] = float(file_bytes(export))
        return metrics

    def export(self, recipe, variant, checkpoint: Path, dest: Path, *, metrics: dict[str, float],
               lineage: list[dict[str, Any]], dataset: Path | None = None) -> Path:
        return self._write_export(recipe, variant, checkpoint, dest, dataset, metrics=metrics, lineage=lineage,
                                  overwrite=True)


TASK = register_task(CausalLM())
