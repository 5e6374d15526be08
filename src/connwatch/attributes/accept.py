"""Accept attributes: AcceptActivity (is the application accepting? how big should the backlog be?).

(previous Snapshot, current Snapshot) -> Measurements. Pure; the counting is in accept_model.py.

- AcceptActivity (port, gauge): connections waiting in the port's accept queue at both samples (they
  waited longer than the interval), with the verdict (stuck, saturated, burst, keeping up), the accept
  rate (a lower bound), the owner's state and the backlog sizing in the facts. A breach folds into the
  port's BacklogRejectsByPort alert when that is breached too (one problem, one alert), whose words
  then carry the same verdict (PortRejectFacts.accept).
"""

from __future__ import annotations

from connwatch.attributes.accept_facts import AcceptFacts
from connwatch.attributes.accept_model import shared_activity, shared_index
from connwatch.attributes.registry import AttributeSpec, Need, Pair, Subject
from connwatch.explain import accept as words
from connwatch.findings import Measurement
from connwatch.model import Snapshot
from connwatch.rules.rule import Rule

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

    from connwatch.rules.config import Config


def _has_accepts(snap: Snapshot) -> bool:
    return snap.sockets is not None and snap.sockets.accepts is not None


SUBJECT_SPECS: tuple[AttributeSpec[Any], ...] = (
    AttributeSpec(
        "AcceptActivity", "conns", False, words.TEXT, AcceptFacts, words.explain,
        (Rule("AcceptActivity", 0, severity=3, alert_class="backlog"),
         Rule("AcceptActivity", 10, severity=2, alert_class="backlog")),
        (Need("inbound connection inodes", _has_accepts,
              "telling queued from accepted connections needs socket inodes of two samples: a `connwatch "
              "snapshot` pair, or `ss -tanie` / /proc/net/tcp"),),
        folds_into=("BacklogRejectsByPort",)),
)


def measure(prev: Snapshot, cur: Snapshot, config: Config | None = None) -> list[Measurement]:
    return measure_pair(Pair(prev, cur), config)


def measure_pair(pair: Pair, config: Config | None = None) -> list[Measurement]:
    """The pair's accept activity per port (the backlog subject reads the same facts: made once, Pair)."""
    from connwatch.attributes.backlog import port_key, shared_accounting

    per_port, _rec, d = shared_accounting(pair)
    out = []
    for port in sorted(shared_index(pair).cur_listeners):
        r = per_port.get(port)
        turned = r.total if r is not None and d.overflows is not None else None
        facts = shared_activity(pair, port, turned)
        if facts is not None:
            out.append(Measurement("AcceptActivity", {"port": port}, port_key(port), float(facts.waited_through),
                                   "conns", "value", facts))
    return out


SUBJECT = Subject("accept", SUBJECT_SPECS, measure, measure_pair=measure_pair)
