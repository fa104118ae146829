import math

import pytest
import torch
import torch.nn.functional as F

from compress.evaluate import (
    generation_speed,
    lm_metrics,
    perplexity,
    prefill_decode_latency,
    teacher_agreement,
)
from compress.evaluate.lm import right_pad

TEXTS = [
    "To be, or not to be, that is the question.",
    "In the beginning God created the heaven and the earth.",
    "Hi there",
]


def test_perplexity_is_exp_of_hand_computed_mean_nll(tokenizer, tiny_teacher):
    nll, count = 0.0, 0
    for text in TEXTS:  # one text at a time, no padding, one position at a time
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            logits = tiny_teacher(input_ids=torch.tensor([ids])).logits[0]
        for pos in range(len(ids) - 1):
            nll -= F.log_softmax(logits[pos], -1)[ids[pos + 1]].item()
            count += 1
    got = perplexity(tiny_teacher, tokenizer, TEXTS, batch_size=2)  # batched with right padding
    assert got == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_perplexity_rejects_bad_input(tokenizer, tiny_teacher):
    with pytest.raises(TypeError, match="list of strings"):
        perplexity(tiny_teacher, tokenizer, "a single string")
    with pytest.raises(ValueError, match="empty"):
        perplexity(tiny_teacher, tokenizer, [])


def test_teacher_agreement_of_a_model_with_itself_and_another(tokenizer, tiny_teacher, make_tiny):
    ids, mask = right_pad([tokenizer(t)["input_ids"] for t in TEXTS], tokenizer.pad_token_id)
    same = teacher_agreement(tiny_teacher, tiny_teacher, ids, mask)
    assert same["agreement"] == 1.0 and same["kl_to_teacher"] == pytest.approx(0.0, abs=1e-5)
    other = make_tiny(seed=1)
    diff = teacher_agreement(other, tiny_teacher, ids, mask)
    assert diff["agreement"] < 1.0 and diff["kl_to_teacher"] > 0.01
    # direct formula on the non-pad positions
    with torch.no_grad():
        s, t = (
            other(input_ids=ids, attention_mask=mask).logits,
            tiny_teacher(input_ids=ids, attention_mask=mask).logits,
        )
    valid = mask.bool()
    log_s, log_t = F.log_softmax(s[valid], -1), F.log_softmax(t[valid], -1)
    assert diff["kl_to_teacher"] == pytest.approx(
        (log_t.exp() * (log_t - log_s)).sum(-1).mean().item(), rel=1e-4
    )
    assert diff["agreement"] == pytest.approx(
        (s[valid].argmax(-1) == t[valid].argmax(-1)).float().mean().item()
    )


def test_speed_and_latency_report_counts(tokenizer, tiny_teacher):
    fast = generation_speed(tiny_teacher, tokenizer, TEXTS, max_new_tokens=4, batch_size=2)
    slow = generation_speed(tiny_teacher, tokenizer, TEXTS, max_new_tokens=4, use_cache=False)
    assert fast["new_tokens"] == slow["new_tokens"] == 4 * len(TEXTS)
    assert fast["tokens_per_s"] > 0 and slow["tokens_per_s"] > 0
    lat = prefill_decode_latency(tiny_teacher, torch.tensor([tokenizer(TEXTS[0])["input_ids"]]), new_tokens=3)
    assert lat["prefill_ms"] > 0 and lat["decode_ms_per_token"] > 0


def test_lm_metrics_combines_everything(tokenizer, tiny_teacher):
    out = lm_metrics(tiny_teacher, tokenizer, TEXTS, teacher=tiny_teacher, max_new_tokens=2, min_tokens=8)
    assert set(out) == {
        "perplexity",
        "parameters",
        "bytes",
        "tokens_per_s",
        "tokens_per_s_no_cache",
        "agreement",
        "kl_to_teacher",
        "nonzero_params",
        "retained_fraction",
        "threads",
    }
    assert 4 * out["parameters"] <= out["bytes"] < 4 * out["parameters"] + 4096  # + rotary buffers
    assert out["agreement"] == 1.0


def test_response_perplexity_scores_only_response_tokens(tokenizer, tiny_teacher):
    from compress.evaluate import response_perplexity

    prompts = [tokenizer(t)["input_ids"] for t in TEXTS[:2]]
    responses = [[11, 12, 13], [14]]
    nll = 0.0
    for p, r in zip(prompts, responses, strict=True):
        with torch.no_grad():
            log_probs = F.log_softmax(tiny_teacher(input_ids=torch.tensor([p + r])).logits[0], -1)
        nll -= sum(log_probs[len(p) - 1 + j, tok].item() for j, tok in enumerate(r))
    got = response_perplexity(tiny_teacher, prompts, responses, batch_size=2, pad_id=tokenizer.pad_token_id)
    assert got == pytest.approx(math.exp(nll / 4), rel=1e-4)
