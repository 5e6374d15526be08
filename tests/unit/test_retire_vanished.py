"""engine.retire_vanished: the alerts of a namespace no longer on the host step as a vanished resource."""

from __future__ import annotations

from pathlib import Path

from connwatch.alerts.store import AlertStore
from connwatch.engine import VANISHED, retire_vanished
from connwatch.findings import Alert
from tests.unit.test_store import alert


def _in(netns: str | None, port: int = 1414) -> Alert:
    resource = {"port": port, "address": None, "proto": "tcp", **({"netns": netns} if netns else {})}
    key = f"TCP({port})" + (f" in {netns}" if netns else "")
    return alert(port, resource=resource, resource_key=key, clear_after=2)


def test_only_the_alerts_of_namespaces_gone_step_and_clear_after_clear_after(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store, AlertStore.open(tmp_path, "netns blue") as other_scope:
        gone, kept, own = store.save([_in("container gone"), _in("container web"), _in(None)])
        [theirs] = other_scope.save([_in("container gone")])  # another scope's: never stepped from this one
        present = frozenset({"container web", "netns blue"})
        first = retire_vanished(store, present, 2_000_000_000.0)
        assert first.cleared == () and [(a.id, a.clean_samples) for a in first.still_active_clean] == [(gone.id, 1)]
        second = retire_vanished(store, present, 2_000_000_005.0)
        [cleared] = second.cleared
        assert second.still_active_clean == () and cleared.id == gone.id and cleared.state == "cleared"
        assert cleared.cleared_at == 2_000_000_005.0 and cleared.detail["cleared_because"] == VANISHED
        assert cleared.detail["backlog"] == 128  # the facts it had are kept
        assert store.get(gone.id or -1) == cleared
        assert sorted(a.id or 0 for a in store.load_active().values()) == [kept.id, own.id]
        assert other_scope.load_active() == {theirs.key: theirs}
        assert retire_vanished(store, present, 2_000_000_010.0).alerts == ()


def test_a_namespace_back_before_its_alert_cleared_keeps_it(tmp_path: Path) -> None:
    """A container restarted under its name is the same key: once present again, its alert is not stepped."""
    with AlertStore.open(tmp_path) as store:
        [web] = store.save([_in("container web")])
        [counted] = retire_vanished(store, frozenset(), 2_000_000_000.0).still_active_clean
        assert counted.clean_samples == 1
        assert retire_vanished(store, frozenset({"container web"}), 2_000_000_005.0).alerts == ()
        assert store.load_active() == {web.key: counted}
