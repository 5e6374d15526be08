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
- one problem, one alert (engine.fold): attributes linked by their specs' folds_into are one family per
  resource (the rejects, accept activity and queue fill of a port; a destination's port usage and
  exhaustion); the alert already open keeps the problem, else the breached attribute lowest in rank takes
  it, and it fires at the most severe severity of its family's breaches (tiers of the severities of the
  family that its own rules lack are generated: `connwatch_rule="folded"`). "Already open" is the rules'
  own state: `ALERTS{alertname=..., alertstate="firing"} offset <interval>` (the previous evaluation);
  host counters that per-port alerts explain fire only while no port rejects.
`for:` per attribute (its spec's `for_samples` x --interval; 0 for every built-in attribute, as the agent
raises on the first breached sample). The agent's clearing is in the expression: an alert held open by a
breach folded into it, or clean for fewer than clear_after samples, keeps firing at the tiers it fired at
before (the agent's alert keeps the severity of its last breach until it clears; `tier_expr`).
Equality needs Prometheus to scrape the agent and evaluate every --interval (a slower scrape misses
intervals the agent judged). Labels: `severity` critical/warning/info (what a default Alertmanager
route knows), `connwatch_severity` the four-level name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from connwatch.attributes.registry import AttributeSpec, family, spec
from connwatch.errors import ConfigError
from connwatch.findings import routing_severity, severity_name
from connwatch.outputs.prom_kernel import snake
from connwatch.outputs.prom_measure import attribute_metric, labels_of
from connwatch.rules.rule import Rule

RUNBOOK_FILE = "runbooks.md"  # package data: docs/runbooks.md of the source tree, installed with the package


def default_runbook_base() -> str:
    """The runbook this installation ships, as a file:// URL: true on the host that printed the rules. Publish
    it where on-call reads it (`connwatch rules --format runbook`) and pass that URL as the base instead."""
    from importlib.resources import files

    return Path(str(files("connwatch") / RUNBOOK_FILE)).resolve().as_uri()


def check_runbook_base(url: str, where: str) -> str:
    """An http(s):// or file:// URL of the runbook document; the rules add `#<section>`. ConfigError else."""
    if not re.fullmatch(r"(https?://[^\s/#]+|file://)/?[^\s#]*", url):
        raise ConfigError(f"{where}: runbook base must be an http(s):// or file:// URL of the runbook document "
                          f"without '#' (the rules add '#<section>'), got {url!r}")
    return url
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
    record: str = ""  # a recording rule (its series' name) rather than an alert


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
    keys = [k for k in labels_of(s) if k not in ("port", "netns")]
    if not keys:
        return f'on (instance, netns, port) connwatch_listener_sockets{{address="{address}"}}'
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


def _on(s: AttributeSpec[object]) -> str:
    return ", ".join(("instance", *labels_of(s)))


def _rank(name: str) -> int:
    s = spec(name)
    return len(s.folds_into) if s is not None else 99


def _breach(attribute: str, rules: Sequence[Rule], interval: float, severity: int | None = None) -> str:
    """Breached by one of its own rules at `severity` or more severe (any if None); the value is the attribute's.
    Host counters that per-port alerts explain are no breach of their own while a port rejects."""
    s = spec(attribute)
    assert s is not None
    tiers = [r for r in rules if r.attribute == attribute and r.high is not None]
    out = " or ".join(f"({value_expr(r, rules, interval)} > {r.high:g})" for r in tiers
                      if severity is None or r.severity <= severity)
    if out and s.explained is not None:
        ports = _breach("BacklogRejectsByPort", rules, interval)
        out = f"({out}) unless on (instance) ({ports})" if ports else out
    return out


def _open(name: str, on: str, interval: float, severity: int | None = None) -> str:
    """The alert was firing at the previous evaluation (the agent's active alert; at `severity` if given)."""
    sev = "" if severity is None else f', connwatch_severity="{severity_name(severity).lower()}"'
    return (f'max by ({on}) (ALERTS{{alertname="{name}", alertstate="firing", connwatch_origin="prometheus"{sev}}} '
            f"offset {interval * 1000:g}ms)")


def _targets(name: str) -> tuple[str, ...]:
    s = spec(name)
    return s.folds_into if s is not None else ()


def _record(name: str, kind: str) -> str:
    return f"connwatch:{snake(name)}:{kind}"


class _Family:
    """PromQL of engine.fold for one attribute: which alert of its family a breach is kept under. With `records`,
    the breaches and the primary are the recording rules' series (recording_rules), evaluated before the alerts."""

    def __init__(self, name: str, rules: Sequence[Rule], interval: float, records: bool = True) -> None:
        s = spec(name)
        assert s is not None
        self.name, self.rules, self.interval, self.on, self.records = name, rules, interval, _on(s), records
        self.members = [m for m in family(name) if _breach(m, rules, interval)]

    def breach(self, name: str, severity: int | None = None) -> str:
        expr = _breach(name, self.rules, self.interval, severity)
        if not self.records or not expr:
            return expr
        if severity is None or expr == _breach(name, self.rules, self.interval):
            return _record(name, "breach")
        return _record(name, f"breach_{severity_name(severity).lower()}")

    def named(self, name: str) -> str:
        """`name` takes part in the fold: breached, or the target of a breached member."""
        return " or ".join(f"({self.breach(m)})" for m in self.members if m == name or name in _targets(m))

    def kept(self, name: str) -> str:
        named = self.named(name)
        return f"({_open(name, self.on, self.interval)} and on ({self.on}) ({named}))" if named else ""

    def primary(self, expand: bool = False) -> str:
        """The alert already active keeps the problem (the lowest in rank of those open); else the breached
        attribute lowest in rank. `expand`: the expression even where a recording rule holds it."""
        x, on = self.name, self.on
        if len(self.members) < 2:
            return self.breach(x)
        if self.records and not expand:
            return _record(x, "primary")
        kept = self.kept(x) + "".join(f" unless on ({on}) {k}" for m in self.members
                                      if _rank(m) < _rank(x) and (k := self.kept(m)))
        new = f"({self.breach(x)})" + "".join(f" unless on ({on}) ({self.breach(m)})" for m in self.members
                                              if _rank(m) < _rank(x))
        new += "".join(f" unless on ({on}) {k}" for m in self.members if (k := self.kept(m)))
        return f"({kept}) or ({new})" if kept else new

    def own(self, severity: int | None = None) -> str:
        """Breached now as the problem's alert, at `severity` or more severe counting the breaches folded into it."""
        if len(self.members) < 2:
            return self.breach(self.name, severity)
        anyone = " or ".join(f"{self.breach(m, severity)}" for m in self.members if self.breach(m, severity))
        if not anyone:
            return ""
        return f"{self.breach(self.name)} and on ({self.on}) {self.primary()} and on ({self.on}) ({anyone})"


def recording_rules(rules: Sequence[Rule], interval: float = 5.0) -> list[PromRule]:
    """The series the alerts read, evaluated first in their group: per attribute its breach (any tier, then at
    each severity of its family where that differs) and, in a family, which alert keeps the problem now. A
    range over these series (the clearing window) holds exactly the evaluations' own results."""
    out: list[PromRule] = []
    primaries: list[PromRule] = []
    for name in dict.fromkeys(r.attribute for r in rules if r.high is not None):
        if spec(name) is None or not _breach(name, rules, interval):
            continue
        fam, raw = _Family(name, rules, interval), _Family(name, rules, interval, records=False)
        out.append(PromRule("", raw.breach(name), {}, {}, record=_record(name, "breach")))
        severities = {r.severity for r in rules if r.attribute in fam.members and r.high is not None}
        for severity in sorted(severities):
            record = fam.breach(name, severity)
            if record and record != _record(name, "breach"):
                out.append(PromRule("", raw.breach(name, severity), {}, {}, record=record))
        if len(fam.members) > 1:
            primaries.append(PromRule("", fam.primary(expand=True), {}, {}, record=_record(name, "primary")))
    return out + primaries


def tier_expr(rule: Rule, s: AttributeSpec[object], rules: Sequence[Rule], interval: float) -> str:
    """Fires while the problem's alert is this attribute's at this tier's severity or a more severe one; then, while
    held open by a breach folded into it or clearing (clear_after - 1 clean samples), at the tier it fired at
    before: the agent's alert keeps the severity of its last breach until it clears. The lower tiers fire too;
    inhibition silences them. Reads the recording rules' series (recording_rules)."""
    fam, on = _Family(s.name, rules, interval), _on(s)
    here, own = fam.own(rule.severity), fam.own()
    window = f"{int((max(rule.clear_after - 1, 0) + 0.5) * interval * 1000)}ms"
    per = f" / {interval:g}" if rule.mode == "rate" else ""
    value = f"max by ({on}) ({attribute_metric(s)}){per}"
    clearing = (f"{value} and on ({on}) {_open(s.name, on, interval, rule.severity)} unless on ({on}) ({own}) "
                f"and on ({on}) count_over_time({fam.primary()}[{window}])")
    return f"({here})\nor\n({clearing})" if here else clearing


def _scope_name(rule: Rule) -> str:
    """Which rule of the attribute fired (two rules of one severity may cover one port: a port rule and an
    address rule; without this label their alerts would be the same series)."""
    parts = [f"port {rule.port}" if rule.port is not None else "", f"address {rule.address}" if rule.address else ""]
    return ", ".join(p for p in parts if p) or "any"


def for_duration(s: AttributeSpec[object], interval: float) -> str:
    return f"{s.for_samples * interval:g}s"


def prometheus_rules(rules: Sequence[Rule], interval: float = 5.0, window: str = "1m",
                     runbook: str | None = None) -> list[PromRule]:
    """One alerting rule per (attribute, scope, severity) in force. `window` is accepted for the 0.1 CLI
    (the rules compare the agent's per-interval values, so no rate window is needed). `runbook`: the URL of the
    runbook document (default: the installed copy, default_runbook_base)."""
    runbook = runbook or default_runbook_base()
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
    return out + _folded_tiers(rules, interval, runbook)


def _folded_tiers(rules: Sequence[Rule], interval: float, runbook: str) -> list[PromRule]:
    """An alert takes the most severe severity of the breaches folded into it (engine.fold): a tier for each
    severity the rules of its family have and its own have not (AcceptQueueFill made Medium by the rejects
    folded into it, though its own rules are Low and High)."""
    out: list[PromRule] = []
    for name in dict.fromkeys(r.attribute for r in rules if r.high is not None):
        s, own = spec(name), [r for r in rules if r.attribute == name and r.high is not None]
        if s is None:
            continue
        members = _Family(name, rules, interval).members
        for severity in sorted({r.severity for r in rules if r.attribute in members and r.high is not None}
                               - {r.severity for r in own}):
            base = replace(min(own, key=lambda r: r.specificity), severity=severity)
            out.append(_prom_rule(base, s, tier_expr(base, s, rules, interval), interval, runbook, by_fold=True))
    return out


def _prom_rule(rule: Rule, s: AttributeSpec[object], expr: str, interval: float, runbook: str,
               by_fold: bool = False) -> PromRule:
    unit = f"{s.unit}/s" if rule.mode == "rate" else s.unit
    value = '{{ $value | printf "%.4g" }}'
    name = severity_name(rule.severity)
    where = _RESOURCE.get(s.scope, _RESOURCE["port"])
    if s.name == "SynCookiesSent":  # per port, and the rest host-wide (port "")
        where = "{{ if $labels.port }}TCP({{ $labels.port }}){{ else }}TCP(host){{ end }}"
    folded = "".join(f", or {n} {name} folded into it" for n in family(s.name) if n != s.name)
    limit = (f"{value} {unit}{{{{ if gt $value {float(rule.high or 0)!r} }}}} > {rule.high:g} {unit}{{{{ else }}}} "
             f"(limit {rule.high:g} {unit}: clearing after a {name} breach{folded}){{{{ end }}}}")
    where += "{{ if $labels.netns }} in netns {{ $labels.netns }}{{ end }}"
    summary = f"{where} {rule.attribute} {name}, {limit}"
    if by_fold:
        others = " or ".join(n for n in family(s.name) if n != s.name)
        summary = f"{where} {rule.attribute} {name}: {others} {name} folded into it ({rule.attribute} {value} {unit})"
    return PromRule(
        alert=rule.attribute, expr=expr, for_=for_duration(s, interval),
        labels={"severity": routing_severity(rule.severity), "connwatch_severity": name.lower(),
                "class": rule.alert_class, "connwatch_origin": "prometheus", "host": HOST_LABEL,
                "connwatch_rule": "folded" if by_fold else _scope_name(rule)},
        annotations={"summary": summary.replace("  ", " "),
                     "description": f"{s.help} connwatch rule: " + (
                         f"a breach of severity {rule.severity} {name} folded into {rule.attribute}" if by_fold else
                         f"{rule.attribute} {rule.mode} > {rule.high:g} (severity {rule.severity} {name})")
                     + ". `connwatch check` on the host explains it and says what to change.",
                     "runbook_url": f"{runbook}#{rule.attribute.lower()}"})


def agent_rules(runbook: str | None = None) -> tuple[PromRule, ...]:
    """Alerts on connwatch itself (its sources, state and delivery)."""
    url = f"{runbook or default_runbook_base()}#connwatch-itself"
    return (
        PromRule("ConnwatchSourceFailing", "connwatch_collector_up == 0",
                 {"severity": "info", "connwatch_severity": "low", "class": "connwatch"},
                 {"summary": "connwatch on {{ $labels.instance }} cannot read {{ $labels.collector }}",
                  "runbook_url": url}, "5m"),
        PromRule("ConnwatchStateUnwritable", "connwatch_state_up == 0",
                 {"severity": "warning", "connwatch_severity": "medium", "class": "connwatch"},
                 {"summary": "connwatch on {{ $labels.instance }} cannot write its state: alerts are not "
                             "recorded or delivered", "runbook_url": url}, "5m"),
        PromRule("ConnwatchNotificationsFailing", "increase(connwatch_notification_failures_total[10m]) > 0 "
                 "and connwatch_notifications_pending > 0",
                 {"severity": "warning", "connwatch_severity": "medium", "class": "connwatch"},
                 {"summary": "connwatch on {{ $labels.instance }} cannot deliver to {{ $labels.receiver }}",
                  "runbook_url": url}, "10m"),
    )


LEVELS = ("critical", "high", "medium", "low")


def inhibit_rules() -> list[dict[str, object]]:
    """Alertmanager inhibit_rules: while a tier fires, the lower tiers of the same problem are silent;
    the agent's own alert silences the same problem from these rules (both may run; see README)."""
    equal = ["alertname", "instance", "netns", "port", "source", "destination", "local_address"]
    out: list[dict[str, object]] = [
        {"source_matchers": [f'connwatch_severity="{high}"'],
         "target_matchers": [f'connwatch_severity=~"{"|".join(LEVELS[i + 1:])}"'], "equal": equal}
        for i, high in enumerate(LEVELS[:-1])]
    out.append({"source_matchers": ['connwatch_origin="agent"'], "target_matchers": ['connwatch_origin="prometheus"'],
                "equal": ["alertname", "host", "netns", "port", "source", "destination", "local_address"]})
    return out


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(rules: Sequence[PromRule], header: str, runbook: str | None = None,
            records: Sequence[PromRule] = ()) -> str:
    inhibit = ["Alertmanager: add these inhibit_rules (one notification per problem; see README):",
               "inhibit_rules:"]
    for inh in inhibit_rules():
        inhibit += [f"  - source_matchers: {json.dumps(inh['source_matchers'])}",
                    f"    target_matchers: {json.dumps(inh['target_matchers'])}",
                    f"    equal: {json.dumps(inh['equal'])}"]
    lines = [f"# {line}" for line in [*header.splitlines(), *inhibit]] + ["groups:"]
    for group, members in (("connwatch", (*records, *rules)), ("connwatch-agent", agent_rules(runbook))):
        lines += [f"  - name: {group}", "    rules:"]  # one group: its recording rules are evaluated first
        for r in members:
            if r.record:
                lines += [f"      - record: {r.record}", f"        expr: {_q(r.expr)}"]
                continue
            lines += [f"      - alert: {r.alert}", f"        expr: {_q(r.expr)}", f"        for: {r.for_}"]
            lines += ["        labels:"] + [f"          {k}: {_q(v)}" for k, v in r.labels.items()]
            lines += ["        annotations:"] + [f"          {k}: {_q(v)}" for k, v in r.annotations.items()]
    return "\n".join(lines) + "\n"
