"""The nightly re-evaluation compares latencies only like for like (issue 18): a latency measured under
another host context is not drift."""

from __future__ import annotations

from flows.reevaluate import comparison_markdown


def _result(registered_host, host):
    return {"model": "m", "alias": "production", "version": 3, "registered_host": registered_host, "host": host,
            "registered": {"accuracy": 0.97, "latency_p50_ms": 1.0},
            "fresh": {"accuracy": 0.97, "latency_p50_ms": 5.3}}


def test_latency_change_is_reported_on_the_same_host_context():
    table = comparison_markdown(_result("abc", "abc"))
    assert "| latency_p50_ms | 1.0 | 5.3 | +4.3 |" in table


def test_latency_change_on_another_host_context_is_not_called_drift():
    for registered in ("abc", None):
        table = comparison_markdown(_result(registered, "def"))
        assert "latency_p50_ms | 1.0 | 5.3 | not comparable" in table
        assert "| accuracy | 0.97 | 0.97 | +0 |" in table  # quality still compares
