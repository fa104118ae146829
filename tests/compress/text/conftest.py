"""Fixtures for the text-classification tests; the model, data and recipe builders live in
tests/text_testing.py (shared with tests/flows/test_text_flow.py)."""

from __future__ import annotations

import pytest
from text_testing import one_thread, write_csv  # noqa: F401 (one_thread: autouse fixture)


@pytest.fixture
def csv_data(tmp_path):
    return write_csv(tmp_path / "train.csv", 64, 0), write_csv(tmp_path / "test.csv", 24, 1)
