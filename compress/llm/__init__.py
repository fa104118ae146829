"""Causal-LM path: load a teacher, generate teacher data from a text corpus, build a smaller student that
shares the tokenizer, and distil it with sequence-level CE and token-level KL.

    teacher, tok = load_causal_lm()                                   # packaged SmolLM2-135M-Instruct
    path = generate_dataset(teacher, tok, make_prompts("shakespeare", 200), "teacher.jsonl",
                            config=GenerateConfig(top_k_logits=16))
    student = make_student(teacher, num_layers=2, init_from_teacher=True)
    report = distill_lm(student, tok, path, LMDistillConfig(max_steps=200))
"""

from compress.llm.corpus import corpus_passages, make_prompts, read_jsonl_prompts
from compress.llm.distill import LMDistillConfig, distill_lm, kd_loss_full, kd_loss_topk
from compress.llm.generate import GenerateConfig, generate_dataset, prompt_hash, read_dataset
from compress.llm.student import make_student, student_config
from compress.llm.teacher import TeacherNotFound, load_causal_lm, load_tokenizer, smollm2_checkpoint_dir

__all__ = ["GenerateConfig", "LMDistillConfig", "TeacherNotFound", "corpus_passages", "distill_lm",
           "generate_dataset", "kd_loss_full", "kd_loss_topk", "load_causal_lm", "load_tokenizer",
           "make_prompts", "make_student", "prompt_hash", "read_dataset", "read_jsonl_prompts",
           "smollm2_checkpoint_dir", "student_config"]
