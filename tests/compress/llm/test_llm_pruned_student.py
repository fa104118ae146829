"""The default causal-LM student: the teacher pruned structurally, recovered by KD on teacher-scored text."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from compress.evaluate.lm import right_pad, teacher_agreement
from compress.llm.distill import LMDistillConfig, distill_lm
from compress.llm.generate import read_dataset, score_texts
from compress.llm.student import calibration_ids, pruned_student
from compress.prune.structured_llm import StructuredLLMPruneConfig, non_embedding_params

TEXTS = ["To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer",
         "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him.",
         "Now is the winter of our discontent made glorious summer by this sun of York."]


def test_pruned_student_is_smaller_and_leaves_teacher_alone(make_tiny, tokenizer, tmp_path):
    teacher = make_tiny(layers=2, hidden=32, tie=True)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calibration = calibration_ids(tokenizer, TEXTS, max_length=16)
    assert [c.shape[0] for c in calibration] == [1, 1, 1] and all(c.shape[1] <= 16 for c in calibration)
    student = pruned_student(teacher, calibration, StructuredLLMPruneConfig(target=0.3, num_attention_heads=2))
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert teacher.config.intermediate_size == 64 and student.config.intermediate_size < 64
    assert abs(1 - non_embedding_params(student) / non_embedding_params(teacher) - 0.3) < 0.03
    assert student.config.pruning["target"] == 0.3
    student.save_pretrained(tmp_path / "s")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    ids = calibration[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, student(input_ids=ids).logits)


def test_score_texts_aligns_topk_with_next_tokens(make_tiny, tokenizer, tmp_path):
    teacher = make_tiny(layers=1, hidden=32)
    path = score_texts(teacher, tokenizer, TEXTS, tmp_path / "scored.jsonl", top_k=4, max_length=12, progress=False)
    records = read_dataset(path)
    assert len(records) == 3 and not (tmp_path / "scored.jsonl.tmp").exists()
    first = records[0]
    ids = first["prompt_ids"] + first["response_ids"]
    assert len(first["prompt_ids"]) == 1 and len(first["topk_ids"]) == len(first["response_ids"]) == len(ids) - 1
    with torch.no_grad():
        logits = teacher(input_ids=torch.tensor([ids])).logits[0]          # (T, V)
    assert [row[0] for row in first["topk_ids"]] == logits[:-1].argmax(-1).tolist()


def test_recovery_distillation_on_scored_text_moves_towards_teacher(make_tiny, tokenizer, tmp_path):
    teacher = make_tiny(layers=2, hidden=32)
    with torch.no_grad():  # layers that matter next to the N(0, 1) embeddings, so pruning them shows
        for layer in teacher.model.layers:
            layer.mlp.down_proj.weight.mul_(30)
            layer.self_attn.o_proj.weight.mul_(30)
    scored = score_texts(teacher, tokenizer, TEXTS, tmp_path / "a.jsonl", top_k=8, max_length=24, progress=False)
    student = pruned_student(teacher, calibration_ids(tokenizer, TEXTS),
                             StructuredLLMPruneConfig(target=0.6, num_attention_heads=2))
    student.model.embed_tokens.weight.requires_grad_(False)
    embed = student.model.embed_tokens.weight.clone()
    ids, mask = right_pad([tokenizer(t)["input_ids"][:24] for t in TEXTS], tokenizer.pad_token_id)
    kl_before = teacher_agreement(student, teacher, ids, mask)["kl_to_teacher"]
    config = LMDistillConfig(max_steps=8, batch_size=3, lr=5e-4, kd_weight=1.0, temperature=1.0)
    report = distill_lm(student, tokenizer, [scored, scored], config, progress=False)
    assert report["kd_source"] == "topk" and report["examples"] == 6
    kl_after = teacher_agreement(student, teacher, ids, mask)["kl_to_teacher"]
    assert kl_after < kl_before
    assert torch.equal(student.model.embed_tokens.weight, embed)        # frozen stays frozen


def test_mixed_topk_widths_refused(make_tiny, tokenizer, tmp_path):
    teacher = make_tiny(layers=1, hidden=32)
    a = score_texts(teacher, tokenizer, TEXTS[:1], tmp_path / "a.jsonl", top_k=2, progress=False)
    b = score_texts(teacher, tokenizer, TEXTS[1:], tmp_path / "b.jsonl", top_k=3, progress=False)
    with pytest.raises(ValueError, match="different widths"):
        distill_lm(make_tiny(layers=1, hidden=32), tokenizer, [a, b], LMDistillConfig(max_steps=1), progress=False)
    with pytest.raises(ValueError, match="non-empty list"):
        calibration_ids(tokenizer, "one string")
