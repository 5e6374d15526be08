"""Prometheus alerting rules equivalent to connwatch's rules, over the agent's /metrics.

Same decisions as the agent (rules/evaluate.py):
- a value rule judges the increase over one sample interval (--interval), a rate rule per second;
- port rules replace the generic rules on their port (the generic rules exclude those ports);
- of several rules on one resource the most severe breached one decides: each rule fires only
  when no more severe rule of its scope does (`unless`), and a rule that a more severe rule with
  a lower limit always shadows is left out.
Attributes with no native expression here (those of other modules) follow the agent's own verdict
(`connwatch_alert_active`), so a fleet view still sees them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from connwatch.attributes.registry import spec
from connwatch.findings import severity_name
from connwatch.rules.rule import Rule


def _native(attribute: str, scope: str | None = None) -> bool:
    """The attribute has its own PromQL (its spec's template), for the given scope if one is named."""
    s = spec(attribute)
    return s is not None and s.promql is not None and (scope is None or s.scope == scope)


@dataclass(frozen=True, slots=True)
class PromRule:
    alert: str
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]
    for_: str = "0s"


def _selector(rule: Rule, excluded_ports: Sequence[int]) -> str:
    parts = []
    if rule.port is not None:
        parts.append(f'port="{rule.port}"')
    elif excluded_ports:
        parts.append(f'port!~"{"|".join(str(p) for p in sorted(excluded_ports))}"')
    if rule.address is not None:
        parts.append(f'address="{rule.address}"')
    return "{" + ", ".join(parts) + "}" if parts else ""


def value_expr(rule: Rule, excluded_ports: Sequence[int], interval: float, window: str) -> str:
    """The PromQL whose value the rule's limit applies to."""
    sel = _selector(rule, excluded_ports)
    per = "" if rule.mode == "rate" else f" * {interval:g}"
    s = spec(rule.attribute)
    if s is not None and s.promql is not None:
        return s.promql.format(sel=sel, window=window, per=per)
    name = severity_name(rule.severity).lower()
    return (f'max by (instance, resource, port, source, destination) '
            f'(connwatch_alert_value{{attribute="{rule.attribute}", severity="{name}"}})')


def _specific_ports(rules: Sequence[Rule], attribute: str) -> list[int]:
    return sorted({r.port for r in rules if r.attribute == attribute and r.port is not None})


def prometheus_rules(rules: Sequence[Rule], interval: float = 5.0, window: str = "1m") -> list[PromRule]:
    out: list[PromRule] = []
    mirrored: set[tuple[str, int]] = set()
    for rule in rules:
        if rule.high is None:
            continue  # "unlimited": the attribute is off for this scope
        if not _native(rule.attribute):
            if (rule.attribute, rule.severity) not in mirrored:  # the agent already chose one per key
                mirrored.add((rule.attribute, rule.severity))
                out.append(_prom_rule(rule, value_expr(rule, [], interval, window)))
            continue
        scope = [r for r in rules if (r.attribute, r.port, r.address) == (rule.attribute, rule.port, rule.address)
                 and r.high is not None and r is not rule]
        stronger = [r for r in scope if r.severity < rule.severity]
        if any((r.high or 0) <= rule.high for r in stronger):
            continue  # a more severe rule with a lower limit always decides first
        excluded = _specific_ports(rules, rule.attribute) if _native(rule.attribute, "port") else []
        expr = f"{value_expr(rule, excluded, interval, window)} > {rule.high:g}"
        for r in sorted(stronger, key=lambda r: r.severity):
            expr += f"\nunless\n{value_expr(r, excluded, interval, window)} > {r.high:g}"
        out.append(_prom_rule(rule, expr))
    return out


def _prom_rule(rule: Rule, expr: str) -> PromRule:
    s = spec(rule.attribute)
    unit = s.unit if s is not None and s.promql is not None else ""
    unit = f"{unit}/s" if rule.mode == "rate" else unit
    where = "TCP({{ $labels.port }})" if _native(rule.attribute, "port") else "TCP(host)"
    if not _native(rule.attribute):
        where = "{{ $labels.resource }}"
    summary = (f"{where} {rule.attribute} High, {{{{ $value | printf \"%.1f\" }}}} {unit} > "
               f"{rule.high:g} {unit}").replace("  ", " ")
    if where.startswith("{{"):  # mirrored: the limit depends on the agent's rule for the resource
        summary = f"{where} {rule.attribute} {{{{ $value | printf \"%.1f\" }}}} (connwatch alert)"
    return PromRule(
        alert=rule.attribute, expr=expr,
        labels={"severity": severity_name(rule.severity).lower(), "class": rule.alert_class},
        annotations={"summary": summary,
                     "description": f"connwatch rule: {rule.attribute} {rule.mode} > {rule.high:g} "
                                    f"(severity {rule.severity}); run `connwatch check` on "
                                    "{{ $labels.instance }} for the explanation and what to change"})


AGENT_RULES = (
    PromRule("ConnwatchSourceFailing", "connwatch_source_up == 0", {"severity": "low", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot read {{ $labels.source }}"}, "5m"),
    PromRule("ConnwatchStateUnwritable", "connwatch_state_up == 0", {"severity": "medium", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot write its state: alerts are not "
                         "recorded or delivered"}, "5m"),
    PromRule("ConnwatchNotificationsFailing", "increase(connwatch_notification_failures_total[10m]) > 0 "
             "and connwatch_notifications_pending > 0", {"severity": "medium", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot deliver to {{ $labels.receiver }}"}, "10m"),
)


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(rules: Sequence[PromRule], header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()] + ["groups:"]
    for group, members in (("connwatch", rules), ("connwatch-agent", AGENT_RULES)):
        lines += [f"  - name: {group}", "    rules:"]
        for r in members:
            lines += [f"      - alert: {r.alert}", f"        expr: {_q(r.expr)}", f"        for: {r.for_}",
                      "        labels:"]
            lines += [f"          {k}: {_q(v)}" for k, v in r.labels.items()]
            lines += ["        annotations:"] + [f"          {k}: {_q(v)}" for k, v in r.annotations.items()]
    return "\n".join(lines) + "\n"
