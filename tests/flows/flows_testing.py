"""Shared helpers of the flow tests (a module, not conftest, so test files can import it by name)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny_mnist(**changes) -> dict:
    """recipes/mnist.yaml with a test budget: 1000 labelled samples, 1 epoch, 1 pruning round."""
    data = yaml.safe_load((ROOT / "recipes" / "mnist.yaml").read_text())
    data["name"] = "mnist-test"
    data["dataset"].update(n_train=1000, n_test=500)
    data["distill"].update(epochs=1)
    data["prune"].update(rounds=1, epochs=1)
    data["evaluate"].update(latency_iters=3, warmup=1)
    data["promote"]["gates"] = [{"metric": "accuracy", "op": ">=", "value": 0.5},
                                {"metric": "accuracy", "op": ">=", "value": -0.05, "relative_to": "parent"}]
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return data


