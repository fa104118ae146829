import json

import pytest

from compress.llm.generate import GenerateConfig, generate_dataset, prompt_hash, read_dataset

PROMPTS = [f"Say something about the number {i} in one line." for i in range(6)]
CFG = GenerateConfig(max_new_tokens=5, temperature=0.8, top_p=0.95, seed=3, batch_size=2, top_k_logits=4)


class Interrupt(RuntimeError):
    pass


def test_dataset_records_are_valid(tokenizer, tiny_teacher, tmp_path):
    path = generate_dataset(
        tiny_teacher, tokenizer, PROMPTS + PROMPTS[:1], tmp_path / "d.jsonl", config=CFG, progress=False
    )
    records = read_dataset(path)
    assert [r["prompt"] for r in records] == PROMPTS  # duplicates generated once, in order
    for r in records:
        assert r["prompt_hash"] == prompt_hash(r["prompt"])
        assert r["input_text"].startswith("<|im_start|>") and r["prompt"] in r["input_text"]  # chat template
        assert 1 <= len(r["response_ids"]) <= CFG.max_new_tokens
        assert r["finish"] in ("eos", "length")
        assert len(r["topk_ids"]) == len(r["topk_logits"]) == len(r["response_ids"])
        assert all(len(row) == 4 for row in r["topk_ids"])
        assert r["generation"]["temperature"] == 0.8 and r["generation"]["seed"] == 3
        assert tokenizer(r["input_text"], add_special_tokens=False)["input_ids"] == r["prompt_ids"]


def test_greedy_topk_is_aligned_with_the_response(tokenizer, tiny_teacher, tmp_path):
    cfg = GenerateConfig(max_new_tokens=6, do_sample=False, batch_size=3, top_k_logits=3)
    records = read_dataset(
        generate_dataset(
            tiny_teacher, tokenizer, PROMPTS[:3], tmp_path / "g.jsonl", config=cfg, progress=False
        )
    )
    for r in records:  # greedy: each response token is the teacher's top-1 at its position
        assert [row[0] for row in r["topk_ids"]] == r["response_ids"]
        assert all(row == sorted(row, reverse=True) for row in r["topk_logits"])


def test_resumes_after_an_interruption_without_duplicates(tokenizer, tiny_teacher, tmp_path):
    path = tmp_path / "d.jsonl"

    def crash_after_first(index, records):
        if index == 0:
            raise Interrupt("simulated crash after batch 1")

    with pytest.raises(Interrupt):
        generate_dataset(
            tiny_teacher, tokenizer, PROMPTS, path, config=CFG, on_batch=crash_after_first, progress=False
        )
    first = read_dataset(path)
    assert [r["prompt"] for r in first] == PROMPTS[:2]
    # an interrupted append leaves half a line; the restart cuts it and carries on
    with open(path, "ab") as fh:
        fh.write(b'{"prompt_hash": "abc", "prom')
    seen = []
    generate_dataset(
        tiny_teacher,
        tokenizer,
        PROMPTS,
        path,
        config=CFG,
        progress=False,
        on_batch=lambda i, recs: seen.extend(r["prompt"] for r in recs),
    )
    records = read_dataset(path)
    assert seen == PROMPTS[2:]  # only the missing prompts were generated
    assert [r["prompt"] for r in records] == PROMPTS  # no duplicates, none lost
    assert records[:2] == first  # earlier batches untouched
    assert path.read_bytes().endswith(b"\n")
    generate_dataset(tiny_teacher, tokenizer, PROMPTS, path, config=CFG, progress=False)  # all done: no-op
    assert len(read_dataset(path)) == len(PROMPTS)


def test_resume_with_another_config_is_refused(tokenizer, tiny_teacher, tmp_path):
    path = generate_dataset(
        tiny_teacher, tokenizer, PROMPTS[:1], tmp_path / "d.jsonl", config=CFG, progress=False
    )
    other = GenerateConfig(max_new_tokens=5, temperature=0.5, seed=3, batch_size=2, top_k_logits=4)
    with pytest.raises(ValueError, match="same config"):
        generate_dataset(tiny_teacher, tokenizer, PROMPTS, path, config=other, progress=False)


def test_corrupt_middle_line_and_bad_config_raise(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\nnot json\n" + json.dumps({"b": 2}) + "\n")
    with pytest.raises(ValueError, match=":2 is not a valid JSON record"):
        read_dataset(path)
    with pytest.raises(ValueError, match="top_p"):
        GenerateConfig(top_p=1.5)
    with pytest.raises(FileNotFoundError, match="generate_dataset"):
        read_dataset(tmp_path / "missing.jsonl")
