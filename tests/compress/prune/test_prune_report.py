"""Per-round report: markdown tables and the PNG plot."""

from __future__ import annotations

import torch

from compress.models import MLP
from compress.prune import PQIPruneConfig, iterative_prune, layers_table, plot_rounds, rounds_table


def test_tables_and_plot(tmp_path):
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    reps = iterative_prune(MLP(784, [16], 10), x, y, config=PQIPruneConfig(gamma=3.0), rounds=2, epochs=1,
                           rewind=True, eval_fn=lambda m: 0.25, fit_kwargs={"batch_size": 32})
    table = rounds_table({"SAP": reps, "short": reps[:2]})
    lines = table.splitlines()
    assert lines[0].startswith("| round | SAP weights % | SAP acc %") and len(lines) == 2 + 3
    assert lines[2].startswith("| 0 | 100.00 | 25.00 |") and lines[-1].endswith("| - | - |")
    per_layer = layers_table(reps)
    assert "layers.0.weight PQI" in per_layer and len(per_layer.splitlines()) == 2 + 2
    path = plot_rounds({"SAP": reps}, tmp_path / "plots" / "p.png", dense_accuracy=0.3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]
