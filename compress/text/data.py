"""Labelled text for sequence classification: read, check and store it.

Sources: CSV, JSONL or Parquet files (text and label columns, names configurable), a Hugging Face
`datasets` id with config and splits, or rows built in code (the Shakespeare genre set). Labels may be
strings or ints; `label_names` fixes the id order (sorted strings, or the ints themselves) and becomes
the exported config's `id2label`/`label2id`.

Every check runs before any model is loaded, and each error names the file or field, the value found
and the fix: a missing column, an empty text, a test label the training split lacks, a hub id while
offline. The checked data is stored as a folder of JSONL files (`save_text_dataset`):

    dataset/labels.json     {"labels": ["comedy", "history", "tragedy"], "text_column": ..., ...}
    dataset/train.jsonl     {"text": "...", "label": 0} per line (label = id)
    dataset/test.jsonl      the held-out split; more named splits (e.g. test_seen.jsonl) may follow
    dataset/transfer.jsonl  optional unlabelled texts (label -1) that only the distillation step reads
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
LABELS_FILE = "labels.json"
TRANSFER = "transfer"  # split of unlabelled texts (label UNLABELLED = -1): KD transfer set, never evaluated


class TextDataError(ValueError):
    """The text data does not fit a classification task; the message names the file/field and the fix."""


@dataclasses.dataclass
class TextSplits:
    """Checked text splits: `splits[name] = (texts, label ids)`; `labels[i]` is the name of id i."""

    labels: list[str]
    splits: dict[str, tuple[list[str], list[int]]]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}


def file_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise TextDataError(f"data file {path}: unknown suffix {suffix!r}; expected one of {sorted(FORMATS)} "
                            "(CSV/TSV, JSON Lines or Parquet)")
    return FORMATS[suffix]


def read_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a CSV/TSV, JSONL or Parquet file and its column names."""
    path = Path(path)
    if not path.is_file():
        raise TextDataError(f"data file {path} does not exist; check data.train / data.test in the recipe")
    kind = file_format(path)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            rows = list(reader)
            return rows, list(reader.fieldnames or [])
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise TextDataError(f"reading {path} needs pyarrow; install it with: pip install pyarrow") from err
        table = pq.read_table(path)
        return table.to_pylist(), list(table.column_names)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise TextDataError(f"{path}:{number} is not valid JSON ({err.msg}); each line must be an "
                                    "object such as {\"text\": ..., \"label\": ...}") from err
    columns = sorted({k for r in rows if isinstance(r, dict) for k in r})
    return rows, columns


def _column_values(rows: list[Any], columns: list[str], column: str, field: str, where: str) -> list[Any]:
    if column not in columns:
        raise TextDataError(f"{where}: no column {column!r} (recipe field data.{field}); columns found: "
                            f"{columns}. Set data.{field} to one of them")
    values = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or row.get(column) is None:
            raise TextDataError(f"{where}: row {i} has no value in column {column!r} (data.{field})")
        values.append(row[column])
    return values


def columns_of(rows: list[Any], columns: list[str], *, text_column: str, label_column: str,
               where: str) -> tuple[list[str], list[Any]]:
    """(texts, raw labels) of one split; refuses missing columns and empty texts, naming the row."""
    if not rows:
        raise TextDataError(f"{where} holds no rows; pass a file with at least one labelled text")
    texts = _texts(rows, columns, text_column, where)
    return texts, _column_values(rows, columns, label_column, "label_column", where)


def _texts(rows: list[Any], columns: list[str], text_column: str, where: str) -> list[str]:
    texts = _column_values(rows, columns, text_column, "text_column", where)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise TextDataError(f"{where}: row {i} has an empty text in column {text_column!r} ({text!r}); "
                                "remove the row or fill in its text")
    return texts


def _label_key(value: Any, where: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TextDataError(f"{where}: label {value!r} must be a string or an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise TextDataError(f"{where}: label {value!r} is not an integer; use class names or ids")
        return int(value)
    return value


def make_splits(raw: dict[str, tuple[list[str], list[Any]]], *, train: str = "train") -> TextSplits:
    """Map raw labels to ids (order: sorted names; CSV digits count as ints). Refuses a label in any
    other split that `train` lacks, and a training split with fewer than two classes."""
    keys = {name: [_label_key(v, f"split {name!r}") for v in labels] for name, (_, labels) in raw.items()}
    if all(isinstance(k, str) and k.lstrip("-").isdigit() for ks in keys.values() for k in ks):
        keys = {name: [int(k) for k in ks] for name, ks in keys.items()}  # CSV cells are strings
    if len({type(k) for ks in keys.values() for k in ks}) > 1:
        raise TextDataError("labels mix strings and integers; use one kind for every split")
    names = sorted(set(keys[train]))
    if len(names) < 2:
        raise TextDataError(f"the training split has {len(names)} distinct label(s) ({names}); "
                            "classification needs at least two")
    for name, ks in keys.items():
        unseen = sorted(set(ks) - set(names), key=str)
        if unseen:
            raise TextDataError(f"split {name!r} has label(s) {unseen[:5]} that the training split lacks "
                                f"(training labels: {names[:20]}); add training examples of them or drop "
                                f"those rows from {name!r}")
    index = {k: i for i, k in enumerate(names)}
    splits = {name: (raw[name][0], [index[k] for k in ks]) for name, ks in keys.items()}
    return TextSplits(labels=[str(n) for n in names], splits=splits)


def load_files(files: dict[str, str], *, text_column: str, label_column: str) -> TextSplits:
    """Splits from files: {"train": path, "test": path, ...} (CSV/TSV, JSONL or Parquet)."""
    raw = {}
    for name, path in files.items():
        rows, columns = read_rows(path)
        raw[name] = columns_of(rows, columns, text_column=text_column, label_column=label_column,
                               where=f"data file {path} ({name} split)")
    return make_splits(raw)


def load_unlabelled(path: str, *, text_column: str) -> list[str]:
    """The texts of a file without labels (a KD transfer set): only `text_column` is read."""
    rows, columns = read_rows(path)
    where = f"data file {path} (data.unlabelled)"
    if not rows:
        raise TextDataError(f"{where} holds no rows; pass a file with at least one text or drop data.unlabelled")
    return _texts(rows, columns, text_column, where)


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_hub_dataset(dataset_id: str, *, config: str | None, splits: dict[str, str], text_column: str,
                     label_column: str) -> TextSplits:
    """Splits of a Hugging Face `datasets` id (or local dataset script folder), e.g. splits
    {"train": "train", "test": "validation"}; class-label ints keep their names from the features."""
    if hub_offline() and not Path(dataset_id).exists():
        raise TextDataError(f"data.hub_dataset {dataset_id!r} is a hub id but the hub is offline "
                            "(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set); export the splits to CSV/JSONL/Parquet "
                            "and set data.train / data.test instead")
    try:
        import datasets
    except ImportError as err:
        raise TextDataError(f"data.hub_dataset {dataset_id!r} needs the `datasets` package; install it with: "
                            "pip install datasets, or export the splits to CSV and set data.train") from err
    raw, names = {}, None
    for name, split in splits.items():
        ds = datasets.load_dataset(dataset_id, config, split=split)
        rows, columns = list(ds), list(ds.column_names)
        raw[name] = columns_of(rows, columns, text_column=text_column, label_column=label_column,
                               where=f"dataset {dataset_id} split {split!r}")
        feature = ds.features.get(label_column)
        names = getattr(feature, "names", None) or names
    if names:  # ClassLabel: store names rather than ids
        raw = {k: (t, [names[i] for i in ys]) for k, (t, ys) in raw.items()}
    return make_splits(raw)


def save_text_dataset(data: TextSplits, root: Path, *, meta: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_FILE).write_text(json.dumps({"labels": data.labels, **(meta or {})}, indent=2) + "\n")
    for name, (texts, ids) in data.splits.items():
        with (root / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for text, label in zip(texts, ids, strict=True):
                f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    return root


def load_text_dataset(root: str | os.PathLike) -> TextSplits:
    """The folder written by `save_text_dataset`."""
    root = Path(root)
    if not (root / LABELS_FILE).is_file():
        raise TextDataError(f"{root} is not a text dataset folder (no {LABELS_FILE}); run the dataset stage")
    labels = json.loads((root / LABELS_FILE).read_text())["labels"]
    splits = {}
    for path in sorted(root.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        splits[path.stem] = ([r["text"] for r in rows], [int(r["label"]) for r in rows])
    return TextSplits(labels=labels, splits=splits)


def dataset_meta(root: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(root) / LABELS_FILE).read_text())
