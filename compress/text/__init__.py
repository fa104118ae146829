"""Text classification with transformers models: data (compress.text.data), the Shakespeare genre set
(shakespeare), teachers and students (models), the training loop (train), structured pruning (prune),
metrics (evaluate) and the task's stage bodies (stages). The task itself: compress/tasks/text_classification.py.
"""
