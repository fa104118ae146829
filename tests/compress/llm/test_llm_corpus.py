import json

import pytest

from compress.llm.corpus import TEMPLATES, corpus_passages, kjv_verses, make_prompts, read_jsonl_prompts


def test_shakespeare_prompts_are_seeded_distinct_and_sized():
    prompts = make_prompts("shakespeare", 12, seed=4, min_chars=100, max_chars=300)
    assert prompts == make_prompts("shakespeare", 12, seed=4, min_chars=100, max_chars=300)
    assert prompts != make_prompts("shakespeare", 12, seed=5, min_chars=100, max_chars=300)
    assert len(set(prompts)) == 12
    assert (
        make_prompts("shakespeare", 5, seed=4, min_chars=100, max_chars=300) == prompts[:5]
    )  # prefix-stable
    for p in prompts:
        template = next(t for t in TEMPLATES if p.startswith(t.split("{passage}")[0]))
        passage = p[len(template.split("{passage}")[0]) :]
        assert 100 <= len(passage) <= 300 and "gutenberg" not in passage.lower()


def test_kjv_passages_come_from_the_bible_cli():
    verses = kjv_verses()
    assert len(verses) == 31102
    assert verses[0] == ("Genesis 1:1", "In the beginning God created the heaven and the earth.")
    passages = corpus_passages("kjv", 5, seed=0, min_chars=150, max_chars=400)
    assert len(passages) == 5 and all(150 <= len(p) <= 400 for p in passages)


def test_jsonl_prompts_and_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(5)) + "\n")
    assert read_jsonl_prompts(path) == [f"q{i}" for i in range(5)]
    assert sorted(make_prompts(path, 3, seed=1)) == sorted(set(make_prompts(path, 3, seed=1)))
    assert len(make_prompts(path, 3, seed=1)) == 3
    path.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2 has no non-empty string \"prompt\""):
        read_jsonl_prompts(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_prompts(tmp_path / "missing.jsonl", 3)
    with pytest.raises(ValueError, match="min_chars"):
        corpus_passages("kjv", 3, min_chars=500, max_chars=100)
