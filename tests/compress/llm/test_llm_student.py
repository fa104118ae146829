import pytest
import torch

from compress.llm.student import evenly_spaced_layers, make_student


def test_student_from_teacher_layers(make_tiny):
    teacher = make_tiny(layers=4, hidden=32, seed=0, tie=True)
    student = make_student(teacher, num_layers=2, init_from_teacher=True, layer_indices=[1, 3])
    assert student.config.num_hidden_layers == 2 and student.config.vocab_size == teacher.config.vocab_size
    assert student.config.teacher_layers == [1, 3]
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["model.layers.0.mlp.up_proj.weight"], t["model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(
        s["model.layers.1.self_attn.q_proj.weight"], t["model.layers.3.self_attn.q_proj.weight"]
    )
    assert torch.equal(s["model.embed_tokens.weight"], t["model.embed_tokens.weight"])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied
    default = make_student(teacher, num_layers=2, init_from_teacher=True)
    assert default.config.teacher_layers == [0, 1]


def test_narrow_student_and_errors(make_tiny):
    teacher = make_tiny(layers=2, hidden=32)
    student = make_student(
        teacher,
        num_layers=1,
        hidden_size=16,
        intermediate_size=24,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    assert (student.config.hidden_size, student.config.head_dim, student.config.intermediate_size) == (
        16,
        8,
        24,
    )
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    out = student(input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits.shape == (1, 3, teacher.config.vocab_size)
    with pytest.raises(ValueError, match="widths must match"):
        make_student(teacher, num_layers=1, hidden_size=16, num_attention_heads=2, init_from_teacher=True)
    with pytest.raises(ValueError, match="layer_indices"):
        make_student(teacher, num_layers=2, init_from_teacher=True, layer_indices=[0, 5])
    with pytest.raises(ValueError, match="divide"):
        make_student(teacher, num_layers=1, hidden_size=30)
    assert evenly_spaced_layers(30, 3) == [0, 14, 29] and evenly_spaced_layers(4, 4) == [0, 1, 2, 3]
