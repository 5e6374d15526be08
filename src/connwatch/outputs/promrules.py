"""Prometheus alerting rules that reach the agent's verdicts, over the agent's /metrics.

Every rule compares `connwatch_attribute_<attribute>` (outputs/prom_measure.py: the value the agent
judged in its last sample, before any rule) with the rule's limit, so Prometheus and the agent agree
on the same data by construction. Same decisions as rules/evaluate.py and engine.fold:
- a value rule judges the value of one sample interval; a rate rule divides it by --interval;
- port (or address) rules replace the generic rules on their port (the generic rules exclude it);
- of several rules on one resource the most severe breached one decides: each tier fires on its own
  (`value > limit`, no `unless`), so the lower tier stays firing through a burst and never flaps; the
  Alertmanager inhibit rules printed with them (`inhibit_rules`) silence the lower tiers while a
  higher one fires: one notification per problem, and the severity changes through inhibition;
- a rule that a more severe rule with a lower limit always shadows is left out;
- one problem, one alert: an attribute its spec folds into another (AcceptQueueFill into
  BacklogRejectsByPort) fires only while the other does not for the same resource; host counters
  that per-port alerts explain fire only while no port rejects.
`for:` per attribute (its spec's `for_samples` x --interval; 0 for every built-in attribute, as the agent
raises on the first breached sample). The agent's clearing is in the expression: an alert clears at its
clear_after-th clean sample and keeps the severity of its last breach until then (`tier_expr`).
Equality needs Prometheus to scrape the agent and evaluate every --interval (a slower scrape misses
intervals the agent judged). Labels: `severity` critical/warning/info (what a default Alertmanager
route knows), `connwatch_severity` the four-level name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from connwatch.attributes.registry import AttributeSpec, spec, specs
from connwatch.findings import routing_severity, severity_name
from connwatch.outputs.prom_measure import attribute_metric, labels_of
from connwatch.rules.rule import Rule

RUNBOOK_BASE = "https://github.com/connwatch/connwatch/blob/main/docs/runbooks.md"
_RESOURCE = {"port": "TCP({{ $labels.port }})", "host": "TCP(host)",
             "destination": "TCP({{ $labels.local_address }}->{{ $labels.destination }})",
             "source": "TCP({{ $labels.port }}) {{ $labels.source }}"}
HOST_LABEL = '{{ reReplaceAll ":[0-9]+$" "" $labels.instance }}'  # the agent's --instance, when scraped by name


@dataclass(frozen=True, slots=True)
class PromRule:
    alert: str
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]
    for_: str = "0s"


def _sel(rule: Rule, excluded_ports: Sequence[int]) -> str:
    parts = []
    if rule.port is not None:
        parts.append(f'port="{rule.port}"')
    elif excluded_ports:
        parts.append(f'port!~"{"|".join(str(p) for p in sorted(excluded_ports))}"')
    return "{" + ", ".join(parts) + "}" if parts else ""


def _address(metric: str, s: AttributeSpec[object], address: str) -> str:
    """`on (...) <series>`: the resources that have the address (Rule.matches): a resource label but port,
    or for a port attribute a listener of the port on that address."""
    keys = [k for k in labels_of(s) if k != "port"]
    if not keys:
        return f'on (instance, port) connwatch_listener_sockets{{address="{address}"}}'
    on = ", ".join(("instance", *labels_of(s)))
    return f"on ({on}) (" + " or ".join(f'{metric}{{{k}=~"{_re(address)}(:[0-9]+)?"}}' for k in keys) + ")"


def _re(text: str) -> str:
    return "".join("\\\\" + c if c in ".[]()*+?|^$" else c for c in text)


def value_expr(rule: Rule, rules: Sequence[Rule], interval: float) -> str:
    """The PromQL whose value the rule's limit applies to (the agent's judged value)."""
    s = spec(rule.attribute)
    assert s is not None
    metric = attribute_metric(s)
    by = ", ".join(("instance", *labels_of(s)))
    same = [r for r in rules if r.attribute == rule.attribute and r.specificity > rule.specificity]
    ports = sorted({r.port for r in same if r.port is not None and r.address is None})
    series = f"{metric}{_sel(rule, ports)}"
    if rule.address is not None:
        series = f"({series} and {_address(metric, s, rule.address)})"
    for addr in sorted({r.address for r in same if r.address is not None}):
        series = f"({series} unless {_address(metric, s, addr)})"
    per = f" / {interval:g}" if rule.mode == "rate" else ""
    return f"max by ({by}) ({series}){per}"


def _folds(s: AttributeSpec[object], rules: Sequence[Rule], interval: float) -> str:
    """`unless` clauses: the alerts this attribute's breach becomes a fact of (engine.fold)."""
    out = ""
    for target in s.folds_into:
        breach = _breach(target, rules, interval)
        if breach:
            on = ", ".join(("instance", *labels_of(s)))
            out += f" unless on ({on}) ({breach})"
    if s.explained is not None:
        breach = _breach("BacklogRejectsByPort", rules, interval)
        if breach:
            out += f" unless on (instance) ({breach})"
    return out


def _breach(attribute: str, rules: Sequence[Rule], interval: float, severity: int | None = None) -> str:
    """Breached at `severity` or more severe (any tier if None), as one PromQL expression whose value is the
    attribute's. A breach folded into it (engine.fold) counts at the member's severity."""
    s = spec(attribute)
    assert s is not None
    tiers = [r for r in rules if r.attribute == attribute and r.high is not None]
    parts = [f"({value_expr(r, rules, interval)} > {r.high:g})" for r in tiers
             if severity is None or r.severity <= severity]
    if severity is not None and tiers:
        for name, _ in _specs_folding_into(attribute):
            member = [r for r in rules if r.attribute == name and r.high is not None and r.severity <= severity]
            if member:
                on = ", ".join(("instance", *labels_of(s)))
                members = " or ".join(f"({value_expr(r, rules, interval)} > {r.high:g})" for r in member)
                parts.append(f"(({_breach(attribute, rules, interval)}) and on ({on}) ({members}))")
    return " or ".join(parts)


def _specs_folding_into(name: str) -> list[tuple[str, AttributeSpec[object]]]:
    return [(n, m) for n, m in specs().items() if name in m.folds_into]


def tier_expr(rule: Rule, s: AttributeSpec[object], rules: Sequence[Rule], interval: float) -> str:
    """Fires while the resource is breached at this tier's severity or a more severe one, and while it clears
    (no breach, for clear_after - 1 samples) if its last breach was that severe: the agent's alert keeps the
    severity of its last breach until it clears. The lower tiers fire too; inhibition silences them."""
    on = ", ".join(("instance", *labels_of(s)))
    folds = _folds(s, rules, interval)  # a folded breach is no breach of its own alert (a clean sample)
    here = f"({_breach(s.name, rules, interval, rule.severity)}){folds}"
    any_ = f"({_breach(s.name, rules, interval)}){folds}"
    window = f"{int((max(rule.clear_after - 1, 0) + 0.5) * interval * 1000)}ms:{interval * 1000:g}ms"
    last_here = f"max_over_time(timestamp({here})[{window}])"
    last_any = f"max_over_time(timestamp({any_})[{window}])"
    clearing = (f"{value_expr(rule, rules, interval)} and on ({on}) (({last_here} >= on ({on}) {last_any}) "
                f"unless on ({on}) ({any_}))")
    return f"({here})\nor\n({clearing})"


def _scope_name(rule: Rule) -> str:
    """Which rule of the attribute fired (two rules of one severity may cover one port: a port rule and an
    address rule; without this label their alerts would be the same series)."""
    parts = [f"port {rule.port}" if rule.port is not None else "", f"address {rule.address}" if rule.address else ""]
    return ", ".join(p for p in parts if p) or "any"


def for_duration(s: AttributeSpec[object], interval: float) -> str:
    return f"{s.for_samples * interval:g}s"


def prometheus_rules(rules: Sequence[Rule], interval: float = 5.0, window: str = "1m",
                     runbook: str = RUNBOOK_BASE) -> list[PromRule]:
    """One alerting rule per (attribute, scope, severity) in force. `window` is accepted for the 0.1 CLI
    (the rules compare the agent's per-interval values, so no rate window is needed)."""
    out: list[PromRule] = []
    for rule in rules:
        s = spec(rule.attribute)
        if rule.high is None or s is None:
            continue  # "unlimited": the attribute is off for this scope
        scope = [r for r in rules if (r.attribute, r.port, r.address) == (rule.attribute, rule.port, rule.address)
                 and r.high is not None and r is not rule]
        if any(r.severity < rule.severity and (r.high or 0) <= rule.high for r in scope):
            continue  # a more severe rule with a lower limit always decides first
        out.append(_prom_rule(rule, s, tier_expr(rule, s, rules, interval), interval, runbook))
    return out


def _prom_rule(rule: Rule, s: AttributeSpec[object], expr: str, interval: float, runbook: str) -> PromRule:
    unit = f"{s.unit}/s" if rule.mode == "rate" else s.unit
    value = '{{ $value | printf "%.4g" }}'
    name = severity_name(rule.severity)
    where = _RESOURCE.get(s.scope, _RESOURCE["port"])
    if s.name == "SynCookiesSent":  # per port, and the rest host-wide (port "")
        where = "{{ if $labels.port }}TCP({{ $labels.port }}){{ else }}TCP(host){{ end }}"
    folded = "".join(f", or {n} {name} folded into it" for n, _ in _specs_folding_into(s.name))
    limit = (f"{value} {unit}{{{{ if gt $value {float(rule.high or 0)!r} }}}} > {rule.high:g} {unit}{{{{ else }}}} "
             f"(limit {rule.high:g} {unit}: clearing after a {name} breach{folded}){{{{ end }}}}")
    summary = f"{where} {rule.attribute} {name}, {limit}"
    return PromRule(
        alert=rule.attribute, expr=expr, for_=for_duration(s, interval),
        labels={"severity": routing_severity(rule.severity), "connwatch_severity": name.lower(),
                "class": rule.alert_class, "connwatch_origin": "prometheus", "host": HOST_LABEL,
                "connwatch_rule": _scope_name(rule)},
        annotations={"summary": summary.replace("  ", " "),
                     "description": f"{s.help} connwatch rule: {rule.attribute} {rule.mode} > {rule.high:g} "
                                    f"(severity {rule.severity} {name}). `connwatch check` on the host explains "
                                    "it and says what to change.",
                     "runbook_url": f"{runbook}#{rule.attribute.lower()}"})


AGENT_RULES = (
    PromRule("ConnwatchSourceFailing", "connwatch_collector_up == 0",
             {"severity": "info", "connwatch_severity": "low", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot read {{ $labels.collector }}",
              "runbook_url": f"{RUNBOOK_BASE}#connwatch-itself"}, "5m"),
    PromRule("ConnwatchStateUnwritable", "connwatch_state_up == 0",
             {"severity": "warning", "connwatch_severity": "medium", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot write its state: alerts are not "
                         "recorded or delivered", "runbook_url": f"{RUNBOOK_BASE}#connwatch-itself"}, "5m"),
    PromRule("ConnwatchNotificationsFailing", "increase(connwatch_notification_failures_total[10m]) > 0 "
             "and connwatch_notifications_pending > 0",
             {"severity": "warning", "connwatch_severity": "medium", "class": "connwatch"},
             {"summary": "connwatch on {{ $labels.instance }} cannot deliver to {{ $labels.receiver }}",
              "runbook_url": f"{RUNBOOK_BASE}#connwatch-itself"}, "10m"),
)
LEVELS = ("critical", "high", "medium", "low")


def inhibit_rules() -> list[dict[str, object]]:
    """Alertmanager inhibit_rules: while a tier fires, the lower tiers of the same problem are silent;
    the agent's own alert silences the same problem from these rules (both may run; see README)."""
    equal = ["alertname", "instance", "port", "source", "destination", "local_address"]
    out: list[dict[str, object]] = [
        {"source_matchers": [f'connwatch_severity="{high}"'],
         "target_matchers": [f'connwatch_severity=~"{"|".join(LEVELS[i + 1:])}"'], "equal": equal}
        for i, high in enumerate(LEVELS[:-1])]
    out.append({"source_matchers": ['connwatch_origin="agent"'], "target_matchers": ['connwatch_origin="prometheus"'],
                "equal": ["alertname", "host", "port", "source", "destination", "local_address"]})
    return out


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(rules: Sequence[PromRule], header: str) -> str:
    inhibit = ["Alertmanager: add these inhibit_rules (one notification per problem; see README):",
               "inhibit_rules:"]
    for inh in inhibit_rules():
        inhibit += [f"  - source_matchers: {json.dumps(inh['source_matchers'])}",
                    f"    target_matchers: {json.dumps(inh['target_matchers'])}",
                    f"    equal: {json.dumps(inh['equal'])}"]
    lines = [f"# {line}" for line in [*header.splitlines(), *inhibit]] + ["groups:"]
    for group, members in (("connwatch", rules), ("connwatch-agent", AGENT_RULES)):
        lines += [f"  - name: {group}", "    rules:"]
        for r in members:
            lines += [f"      - alert: {r.alert}", f"        expr: {_q(r.expr)}", f"        for: {r.for_}"]
            lines += ["        labels:"] + [f"          {k}: {_q(v)}" for k, v in r.labels.items()]
            lines += ["        annotations:"] + [f"          {k}: {_q(v)}" for k, v in r.annotations.items()]
    return "\n".join(lines) + "\n"
