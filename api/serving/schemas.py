"""Request and response shapes of the model server. The OpenAI-compatible ones ignore fields they do not
know (clients send many optional ones) but refuse, with a 422, the options they cannot honour
(`stream`, `n` > 1, `logprobs`, `echo`, `best_of`)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.serving.loader import Resolved


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] = Field(description="one entry per sample: an array of numbers (a zoo classifier) or a "
                                          "string (a text classifier)")


class _Generation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    logprobs: Any = None
    echo: bool = False
    best_of: int | None = None

    @model_validator(mode="after")
    def _supported(self):
        unsupported = {"stream": self.stream, "n > 1": self.n != 1, "logprobs": self.logprobs not in (None, False),
                       "echo": self.echo, "best_of > 1": (self.best_of or 1) != 1}
        asked = [name for name, on in unsupported.items() if on]
        if asked:
            raise ValueError(f"this server does not support {', '.join(asked)}; send one completion per "
                             "request without streaming")
        return self

    def generation(self) -> dict[str, Any]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return {"max_tokens": self.max_tokens, "stop": stop, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed}


class CompletionRequest(_Generation):
    prompt: str | list[str] = Field(description="a prompt, or a list of prompts (one choice each)")

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value):
        if (isinstance(value, str) and not value) or (isinstance(value, list) and not value):
            raise ValueError("prompt must be a non-empty string or a non-empty list of strings")
        return value


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def generation(self) -> dict[str, Any]:
        out = super().generation()
        if self.max_completion_tokens is not None:
            out["max_tokens"] = self.max_completion_tokens
        return out


def _usage(outputs: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(o["prompt_tokens"] for o in outputs)
    completion = sum(o["completion_tokens"] for o in outputs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_response(resolved: Resolved, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    choices = [{"index": i, "text": o["text"], "finish_reason": o["finish_reason"], "logprobs": None}
               for i, o in enumerate(outputs)]
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": f"{resolved.name}:{resolved.version}", "choices": choices, "usage": _usage(outputs)}


def chat_response(resolved: Resolved, output: dict[str, Any]) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": output["text"]},
              "finish_reason": output["finish_reason"]}
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": f"{resolved.name}:{resolved.version}", "choices": [choice], "usage": _usage([output])}
