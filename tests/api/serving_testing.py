"""Helpers of the model-server tests: a real registry (SQLite file + artifact store), real exports (a tiny zoo
MLP, a tiny random Llama with the packaged SmolLM2 tokenizer, a tiny BERT), and a real uvicorn server on
a free loopback port in a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import torch
import uvicorn

import registry.repository as repo
from api.serving.app import create_serving_app
from api.serving.settings import ServeSettings
from api.settings import ApiSettings
from compress.export import export_model
from registry.session import init_db, make_engine, session_scope
from registry.store import ArtifactStore


class Registry:
    """A migrated SQLite registry with an artifact store under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.url = f"sqlite:///{root / 'registry.db'}"
        self.store_root = root / "artifacts"
        init_db(self.url)
        self.engine = make_engine(self.url)
        self.store = ArtifactStore(self.store_root)

    def publish(self, export_dir: Path, model: str, alias: str | None = None) -> int:
        """Register `export_dir` as the next version of `model` (created if new); optionally alias it."""
        with session_scope(self.engine) as s:
            repo.get_or_create_model(s, name=model)
            art = repo.register_artifact(s, self.store, kind="export", path=export_dir, format="export-none")
            version = repo.create_version(s, model_name=model, artifact_id=art.id).version
            if alias:
                repo.set_alias(s, model_name=model, version=version, alias=alias)
        return version

    def set_alias(self, model: str, version: int, alias: str) -> None:
        with session_scope(self.engine) as s:
            repo.set_alias(s, model_name=model, version=version, alias=alias)

    def token(self, *scopes: str) -> dict[str, str]:
        with session_scope(self.engine) as s:
            plaintext = repo.create_token(s, name="+".join(scopes), scopes=list(scopes))[1]
        return {"Authorization": f"Bearer {plaintext}"}

    def settings(self, model: str, **overrides) -> ServeSettings:
        api = ApiSettings(database_url=self.url, artifact_root=str(self.store_root),
                          open_reads=overrides.pop("open_reads", True))
        return ServeSettings(model=model, api=api, **overrides)


def mlp_export(dest: Path, seed: int) -> Path:
    from compress.models import MLP

    torch.manual_seed(seed)
    export_model(MLP(in_features=12, hidden=(16,), num_classes=4), dest)
    return dest


def llama_export(dest: Path) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from compress.llm.teacher import smollm2_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id)
    export_model(LlamaForCausalLM(config).eval(), dest, tokenizer=tokenizer)
    return dest


def bert_export(dest: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "very", "not"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    export_model(BertForSequenceClassification(config).eval(), dest, tokenizer=tokenizer)
    return dest


@contextlib.contextmanager
def running_server(settings: ServeSettings, *, ready: bool = True):
    """A real uvicorn server on 127.0.0.1:<free port> in a thread; yields its base URL."""
    app = create_serving_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the model server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        if ready:
            wait_for(lambda: httpx.get(f"{base}/ready").status_code == 200, what="/ready")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(condition, *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def metric(base: str, name: str, headers: dict | None = None) -> float:
    """One un-labelled sample of /metrics."""
    for line in httpx.get(f"{base}/metrics", headers=headers).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
