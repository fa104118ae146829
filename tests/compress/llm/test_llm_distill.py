import json

import pytest
import torch

from compress.evaluate import teacher_agreement
from compress.evaluate.lm import right_pad
from compress.llm.distill import IGNORE, LMDistillConfig, _example, distill_lm, kd_loss_full, kd_loss_topk
from compress.llm.generate import GenerateConfig, generate_dataset, read_dataset

PROMPTS = [f"Write a line about the colour number {i}." for i in range(8)]


def test_kd_losses_equal_the_direct_formula():
    torch.manual_seed(0)
    s, t, temp = torch.randn(5, 11), torch.randn(5, 11) * 3, 2.0
    expected = 0.0
    for n in range(5):  # KL(p_t || p_s) at temperature T, one position at a time, times T^2
        p = torch.exp(t[n] / temp) / torch.exp(t[n] / temp).sum()
        q = torch.exp(s[n] / temp) / torch.exp(s[n] / temp).sum()
        expected += sum(p[v] * torch.log(p[v] / q[v]) for v in range(11)) / 5
    assert kd_loss_full(s, t, temp).item() == pytest.approx(temp**2 * expected.item(), rel=1e-5)
    ids = t.topk(3, dim=-1).indices
    vals = t.gather(-1, ids)
    expected = 0.0
    for n in range(5):  # teacher renormalised over its top 3, student over the full vocabulary
        p = torch.softmax(vals[n] / temp, -1)
        q = torch.softmax(s[n] / temp, -1)[ids[n]]
        expected += (p * (p.log() - q.log())).sum() / 5
    assert kd_loss_topk(s, ids, vals, temp).item() == pytest.approx(temp**2 * expected.item(), rel=1e-5)
    full_ids = torch.arange(11).expand(5, 11)  # k = V: top-k KD is the full KD
    assert kd_loss_topk(s, full_ids, t, temp).item() == pytest.approx(
        kd_loss_full(s, t, temp).item(), rel=1e-5
    )


def test_prompt_tokens_are_masked(tokenizer):
    record = {
        "prompt_ids": [5, 6, 7],
        "response_ids": [8, 9, 2],
        "topk_ids": [[8], [9], [2]],
        "topk_logits": [[1.0], [1.0], [1.0]],
    }
    ex = _example(record, tokenizer, max_length=5)  # too long: the prompt is cut from the left
    assert ex["ids"] == [6, 7, 8, 9, 2] and ex["labels"] == [IGNORE, IGNORE, 8, 9, 2]
    assert _example({"text": "Hello world"}, tokenizer, 16)["labels"] == tokenizer("Hello world")["input_ids"]


@pytest.fixture(scope="module")
def dataset(tokenizer, tiny_teacher, tmp_path_factory):
    cfg = GenerateConfig(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=0, batch_size=4, top_k_logits=8)
    return generate_dataset(
        tiny_teacher,
        tokenizer,
        PROMPTS,
        tmp_path_factory.mktemp("kd") / "d.jsonl",
        config=cfg,
        progress=False,
    )


def _response_kl(student, teacher, tokenizer, path):
    """Mean KL(teacher || student) over the positions that predict response tokens (what KD trains)."""
    records = read_dataset(path)
    ids, mask = right_pad([r["prompt_ids"] + r["response_ids"] for r in records], tokenizer.pad_token_id)
    valid = torch.zeros_like(mask, dtype=torch.bool)
    for i, r in enumerate(records):
        start = len(r["prompt_ids"]) - 1
        valid[i, start : start + len(r["response_ids"])] = True
    with torch.no_grad():
        s = student(input_ids=ids, attention_mask=mask).logits[valid]
        t = teacher(input_ids=ids, attention_mask=mask).logits[valid]
    return kd_loss_full(s, t, 1.0).item()


@pytest.mark.parametrize("source", ["topk", "teacher"])
def test_a_few_steps_reduce_kl_to_the_teacher(source, tokenizer, tiny_teacher, make_tiny, dataset):
    student = make_tiny(layers=1, hidden=32, seed=7)
    before = _response_kl(student, tiny_teacher, tokenizer, dataset)
    cfg = LMDistillConfig(
        max_steps=8, batch_size=4, lr=3e-2, kd_weight=1.0, temperature=1.0, kd_source=source
    )
    report = distill_lm(
        student,
        tokenizer,
        dataset,
        cfg,
        teacher=tiny_teacher if source == "teacher" else None,
        progress=False,
    )
    after = _response_kl(student, tiny_teacher, tokenizer, dataset)
    assert report["kd_source"] == source and report["steps"] == 8 and len(report["losses"]) == 8
    assert report["loss_last"] < report["loss_first"]
    assert after < 0.8 * before, (before, after)
    assert teacher_agreement(student, student, *right_pad([[1, 2, 3]], 0))["agreement"] == 1.0
    assert not student.training


def test_raw_text_baseline_and_config_errors(tokenizer, make_tiny, tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps({"text": f"Line {i}: to be or not to be."}) + "\n" for i in range(4)))
    student = make_tiny(layers=1, hidden=16, seed=1)
    report = distill_lm(
        student, tokenizer, path, LMDistillConfig(max_steps=2, batch_size=2, kd_weight=0.0), progress=False
    )
    assert report["kd_source"] == "none" and report["tokens"] > 0
    with pytest.raises(ValueError, match="no KD signal"):
        distill_lm(student, tokenizer, path, LMDistillConfig(max_steps=1, kd_weight=0.5), progress=False)
    with pytest.raises(ValueError, match="kd_weight"):
        LMDistillConfig(kd_weight=1.5)
    with pytest.raises(ValueError, match="grad_accum"):
        LMDistillConfig(grad_accum=0)
