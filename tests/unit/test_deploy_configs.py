"""deploy/: Prometheus config and rules valid (promtool), the 500 ms latency rule
unit-tested by promtool, and the Grafana dashboard querying real metric names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from controlplane.telemetry.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _promtool(*args: str) -> str:
    result = subprocess.run(
        ["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_prometheus_config_and_rules_are_valid() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    out = _promtool("check", "rules", "alert-rules.yml")
    assert re.search(r"SUCCESS: \d+ rules found", out)


def test_latency_rule_fires_above_500ms_and_not_below() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alert-rules.test.yml")


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "histogram":
            names.update({f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"})
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_dashboard_and_rules_use_only_exported_metrics() -> None:
    exported = _exported_names()
    dashboard = json.loads((DEPLOY / "grafana" / "telemed-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += re.findall(
        r"expr: \|?\s*([^\n]+(?:\n\s{12}[^\n]+)*)",
        (DEPLOY / "prometheus" / "alert-rules.yml").read_text(),
    )
    assert len(expressions) >= 10
    for expr in expressions:
        for name in re.findall(r"\btelemed_[a-z_]+", expr):
            assert name in exported, f"{name} is not exported"


def test_no_metric_has_a_per_room_or_per_person_label() -> None:
    forbidden = {
        "room",
        "room_id",
        "session",
        "session_id",
        "participant",
        "peer",
        "user",
        "patient",
    }
    for family in Metrics().registry.collect():
        for sample in family.samples:
            assert not forbidden & set(sample.labels), family.name
    for metric in Metrics().registry._names_to_collectors.values():
        assert not forbidden & set(getattr(metric, "_labelnames", ())), metric
