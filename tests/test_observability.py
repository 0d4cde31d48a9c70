"""The Grafana dashboard and the Prometheus alert rules: valid, and over series that exist.

The rules are checked by `promtool check rules` when Prometheus' promtool is installed
(.ci/run installs Debian's), and always against the rule file's schema here; every metric the
dashboard and the rules name must be on some service's /metrics.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from micropay_common.services import SERVICES, ServiceName
from micropay_testing.apps import EXPECTED, as_environment_value, serve

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "monitoring" / "micropay.rules.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "monitoring" / "prometheus-rule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "micropay.json"

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
RULE_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
METRIC = re.compile(r"\b((?:micropay|http)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
SEVERITIES = {"info", "warning", "critical"}
# Registered by background jobs as they start, a moment after the app.
JOB_GAUGES = {"transactions": ("micropay_ledger_check_ok",)}


def rule_groups() -> list[dict[str, Any]]:
    """The groups of the plain rule file."""
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    groups: list[dict[str, Any]] = document["groups"]
    return groups


def schema_problems(groups: Any) -> list[str]:
    """What Prometheus' rule file format refuses (its schema), or [] when it is valid."""
    problems: list[str] = []
    if not isinstance(groups, list) or not groups:
        return ["`groups` must be a non-empty list"]
    names: set[str] = set()
    for group in groups:
        unknown = set(group) - {"name", "interval", "rules", "limit", "labels"}
        if unknown:
            problems.append(f"group has unknown keys {sorted(unknown)}")
        name = group.get("name")
        if not isinstance(name, str) or not name or name in names:
            problems.append(f"group name {name!r} missing or repeated")
        names.add(str(name))
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{name}: no rules")
            continue
        for rule in rules:
            problems += [f"{name}: {problem}" for problem in _rule_problems(rule)]
    return problems


def _rule_problems(rule: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    unknown = set(rule) - {
        "alert",
        "record",
        "expr",
        "for",
        "keep_firing_for",
        "labels",
        "annotations",
    }
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}")
    if ("alert" in rule) == ("record" in rule):
        return [*problems, f"{rule}: exactly one of alert and record"]
    name = rule.get("alert") or rule.get("record")
    if not isinstance(name, str) or not RULE_NAME.match(name):
        problems.append(f"invalid name {name!r}")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{name}: no expr")
    elif not _balanced(expr):
        problems.append(f"{name}: unbalanced brackets in {expr!r}")
    for key in ("for", "keep_firing_for"):
        if key in rule and not DURATION.match(str(rule[key])):
            problems.append(f"{name}: `{key}` is not a duration: {rule[key]!r}")
    for key in ("labels", "annotations"):
        values = rule.get(key, {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            problems.append(f"{name}: `{key}` must map strings to strings")
    if "record" in rule and ("annotations" in rule or "for" in rule):
        problems.append(f"{name}: a recording rule has no annotations or `for`")
    if "alert" in rule and rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
    return problems


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard's panels."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_the_rule_file_has_the_alerts_operators_need_and_matches_its_schema() -> None:
    groups = rule_groups()
    assert schema_problems(groups) == []
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    # A growing backlog, dead events, a failing invariant check, a rise in 5xx.
    assert (
        "micropay_outbox_oldest_pending_age_seconds"
        in alerts["MicroPayOutboxBacklogGrowing"]["expr"]
    )
    assert "micropay_outbox_dead" in alerts["MicroPayDeadEvents"]["expr"]
    assert "micropay_ledger_check_ok == 0" in alerts["MicroPayLedgerInvariantFailing"]["expr"]
    assert 'status="5xx"' in alerts["MicroPayHttp5xxRising"]["expr"]


def test_the_schema_check_refuses_what_prometheus_refuses() -> None:
    good = {"alert": "Ok", "expr": "up == 0", "for": "5m", "labels": {"severity": "warning"}}
    assert schema_problems([{"name": "g", "rules": [good]}]) == []
    assert schema_problems([{"name": "g", "rules": [{**good, "expr": "sum(rate(x[5m])"}]}])
    assert schema_problems([{"name": "g", "rules": [{**good, "for": "five minutes"}]}])
    assert schema_problems([{"name": "g", "rules": [{**good, "record": "x"}]}])
    assert schema_problems([{"name": "g", "rules": [{**good, "labels": {"severity": 1}}]}])
    assert schema_problems([{"name": "g", "rules": [good]}, {"name": "g", "rules": [good]}])
    assert schema_problems([{"name": "g", "rules": [{**good, "exprr": "up"}]}])


def test_the_prometheus_rule_carries_the_same_groups() -> None:
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["namespace"] == "micropay"
    assert manifest["spec"] == {"groups": rule_groups()}


def test_promtool_accepts_the_rules_where_it_is_installed(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())
    from_manifest = tmp_path / "from-prometheus-rule.yml"
    from_manifest.write_text(yaml.safe_dump(manifest["spec"]))
    if promtool is None:
        # Without Prometheus installed, the schema check stands in for promtool.
        assert schema_problems(manifest["spec"]["groups"]) == []
        return
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES), str(from_manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_parses_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "micropay"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert _balanced(target["expr"]), target["expr"]


async def _exposed_metrics(monkeypatch: pytest.MonkeyPatch, service_settings: Any) -> set[str]:
    """The metric names on the /metrics of each service, started as a deployment starts it."""
    names: set[str] = set()
    for name in SERVICES:
        spec = SERVICES[ServiceName(name)]
        settings_module = importlib.import_module(f"{spec.package}.settings")
        settings_cls = next(
            value
            for attribute, value in vars(settings_module).items()
            if attribute.endswith("Settings") and attribute != "ServiceSettings"
        )
        settings = service_settings(name, settings_cls=settings_cls, **EXPECTED[name]["extra"])
        with monkeypatch.context() as patch:
            for field, value in settings.model_dump().items():
                if value is not None:
                    patch.setenv(field.upper(), as_environment_value(value))
            main = importlib.import_module(f"{spec.package}.main")
            async with serve(main.app) as client:
                # The background jobs register their gauges as they start.
                for _ in range(50):
                    text = (await client.get("/metrics")).text
                    found = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
                    if {"micropay_outbox_pending", *JOB_GAUGES.get(name, ())} <= found:
                        break
                    await asyncio.sleep(0.1)
        names |= found
    return names


def _base(metric: str, exposed: set[str]) -> str:
    for suffix in SUFFIXES:
        if metric.endswith(suffix) and metric.removesuffix(suffix) in exposed:
            return metric.removesuffix(suffix)
    return metric


async def test_every_metric_of_the_dashboard_and_the_rules_is_exposed(
    monkeypatch: pytest.MonkeyPatch, service_settings: Any
) -> None:
    exposed = await _exposed_metrics(monkeypatch, service_settings)
    exprs = dashboard_exprs() + [rule["expr"] for group in rule_groups() for rule in group["rules"]]
    referenced = {metric for expr in exprs for metric in METRIC.findall(expr)}
    assert referenced
    missing = sorted(m for m in referenced if _base(m, exposed) not in exposed)
    assert not missing, f"no service exposes {missing}"
    # What the operators watch, named by the issue, is on the dashboard.
    on_dashboard = {_base(m, exposed) for expr in dashboard_exprs() for m in METRIC.findall(expr)}
    assert on_dashboard >= {
        "micropay_outbox_pending",
        "micropay_outbox_oldest_pending_age_seconds",
        "micropay_outbox_dead",
        "micropay_notifications_pending",
        "micropay_webhook_failures_total",
        "micropay_stripe_request_duration_seconds",
        "micropay_aws_request_duration_seconds",
        "micropay_ledger_check_ok",
        "http_requests_total",
    }
