"""The agent's hold on its state database: open lazily, fail soft, say so once, recover.

A state dir on a full or read-only disk must not stop sampling or /metrics: every failure closes
the store and the next sample tries again. One ERROR line when the trouble starts (or its cause
changes), one INFO line when it is over.
"""

from __future__ import annotations

import logging
from pathlib import Path

from connwatch.agent.outbox import Outbox
from connwatch.alerts.store import AlertStore
from connwatch.errors import StateError

log = logging.getLogger("connwatch.agent")


class StateKeeper:
    def __init__(self, state_dir: Path, scope: str = "") -> None:
        self.state_dir = state_dir
        self.scope = scope  # the run namespace's (alerts/store.py, sources/netns.run_scope)
        self.store: AlertStore | None = None
        self._outbox: Outbox | None = None
        self.problem: str | None = None
        self.errors = 0

    def get(self) -> AlertStore | None:
        """The open store, or None while the state dir refuses (already logged)."""
        if self.store is None:
            try:
                self.store = AlertStore.open(self.state_dir, self.scope)
            except StateError as exc:
                self.failed(exc)
        return self.store

    def outbox(self) -> Outbox | None:
        """The outbox on the same connection (its tables made on first use), or None (logged)."""
        store = self.get()
        if store is not None and self._outbox is None:
            try:
                self._outbox = Outbox(store.db)
            except StateError as exc:
                self.failed(exc)
        return self._outbox

    def failed(self, exc: StateError) -> None:
        self.errors += 1
        self.close()
        message = str(exc)
        if message != self.problem:
            log.error("%s; alerts are not recorded or delivered until this is fixed, sampling and "
                      "/metrics go on; retrying every sample", message)
        self.problem = message

    def succeeded(self) -> bool:
        """Note a successful use; True when that ends a period of failures."""
        if self.problem is None:
            return False
        log.info("state %s: usable again, recording and delivering alerts", self.state_dir)
        self.problem = None
        return True

    @property
    def up(self) -> bool:
        return self.problem is None

    def close(self) -> None:
        self._outbox = None
        if self.store is not None:
            self.store.close()
            self.store = None
