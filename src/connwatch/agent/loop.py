"""The agent's main loop: a full sample every --interval, listeners alone in between.

Full sample: every source (sockets included) -> judge against the previous full sample (alerts
saved in the state database) -> notifications queued in the outbox -> /metrics families rebuilt.
Listener poll (every --listener-interval, < 1 ms): queue lengths only; the largest queue seen since
the previous full sample is what the next judgement sees (AcceptQueueFill is the interval's peak),
so a queue that filled and drained between two full samples is not missed. Drop counters are
cumulative, so no drop is ever missed between samples.

Signals: SIGTERM/SIGINT stop cleanly (the current sample finishes, the outbox stays on disk);
SIGHUP reloads --config (a bad file is refused with one line and the rules in force are kept).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from prometheus_client import CollectorRegistry, ProcessCollector

from connwatch.agent import systemd
from connwatch.agent.delivery import Delivery, enqueue, reconcile
from connwatch.agent.metrics_cache import MetricsCache
from connwatch.agent.netns_sample import LISTENERS_SOURCE, NetnsSampler
from connwatch.agent.options import AgentOptions
from connwatch.agent.owned import Identity, KnownOwners, with_peaks
from connwatch.agent.poll import ListenerPoller
from connwatch.agent.server import serve
from connwatch.agent.state import StateKeeper
from connwatch.agent.steady import Steady, reusable, steady_after
from connwatch.agent.tw_plan import TIME_WAIT_ATTRIBUTES, count_time_wait, plan_time_wait
from connwatch.alerts.lifecycle import StepResult
from connwatch.clock import Clock
from connwatch.collect import CollectOptions, collect
from connwatch.collect_tw import TimeWaitCaches
from connwatch.engine import CheckResult, judge, retire_vanished
from connwatch.errors import ConfigError, StateError
from connwatch.findings import Alert, Measurement
from connwatch.model import Listener, Snapshot
from connwatch.outputs.prometheus import AgentStats, MetricsOptions, SnapshotCollector, View
from connwatch.outputs.summary import cleared_line, log_lines
from connwatch.perf import gc_paused
from connwatch.rules.config import Config, load_config
from connwatch.rules.rule import Rule
from connwatch.sources.netns import run_scope
from connwatch.sources.procfs import ProcFS

log = logging.getLogger("connwatch.agent")
__all__ = ["LISTENERS_SOURCE", "Agent"]


class Agent:
    def __init__(self, opts: AgentOptions, config: Config, clock: Clock) -> None:
        self.opts, self.config, self.clock = opts, config, clock
        scope = run_scope()  # (alerts/store.py; the live namespace, whatever --proc-root) one for the agent's life
        self.keeper = StateKeeper(opts.state_dir, scope)
        self.collector = SnapshotCollector(MetricsOptions(opts.kernel_counters, opts.legacy_metrics))
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        self.metrics_cache = MetricsCache(self.registry)  # /metrics text rendered once per sample
        ProcessCollector(namespace="", registry=self.registry)  # the standard process_* series
        if opts.legacy_metrics:
            ProcessCollector(namespace="connwatch_agent", registry=self.registry)  # 0.1 names, deprecated
        self.delivery = (Delivery(opts.receivers, opts.state_dir, clock, opts.resend_s, opts.retry_max_s,
                                  instance=self.instance(None), scope=scope) if opts.receivers else None)
        self.poller = ListenerPoller(opts.proc_root, opts.use_netlink)
        self.wake = threading.Event()
        self.stopping = False
        self.reload_requested = False
        self.prev: dict[tuple[int, str] | None, Snapshot] = {}  # the previous full sample, per namespace
        self.steady: dict[tuple[int, str] | None, Steady] = {}  # namespaces standing still (agent/steady.py)
        self.reuse_judgements = True  # (False: judge every namespace every sample, as tests compare)
        self.peaks: dict[Identity, int] = {}
        # Another namespace's polled listeners (the poller's tuple, the same object while it reuses its dump)
        # and their owned copy, since the last full sample: a reused tuple's queues are in self.peaks already
        # and its owners are those of then (100 idle namespaces: ~10 ms of CPU per 4 polls less).
        self._polled: dict[int, tuple[tuple[Listener, ...], tuple[Listener, ...]]] = {}
        self._own_polled: tuple[tuple[Listener, ...], tuple[Listener, ...]] | None = None  # the same, own poll
        # The same pairs of the last full sample's namespaces whose queues were all 0: a poll that answers with
        # that sample's dump (collect_netns.py adopt) then changes no peak and takes its owned copy.
        self._sampled: dict[int, tuple[tuple[Listener, ...], tuple[Listener, ...]]] = {}
        self.known = KnownOwners()  # the owners of the last scan (agent/owned.py)
        self.raised = False
        self.alerts: tuple[Alert, ...] = ()
        self.measurements: tuple[Measurement, ...] = ()
        self.measured: tuple[tuple[Measurement, ...], ...] = ()  # the same, one block per namespace judged
        self.samples = {"full": 0, "listeners": 0}
        self.netns = NetnsSampler(opts.proc_root, opts.netns, clock, self.samples)  # (--netns other than own)
        self.time_wait = TimeWaitCaches() if opts.time_wait_when_due else None  # per namespace
        self.sample_seconds: dict[str, float] = {}
        self.source_errors: dict[str, int] = {}
        self.reload_failures = 0
        self.config_ok = True
        self._last_error: dict[str, str] = {}
        self._limits_said: set[str] = set()

    # -- life cycle ------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.wake.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake.set()

    def run(self) -> int:
        o = self.opts
        httpd = (serve(o.listen_host, o.listen_port, self.registry, o.tls_cert, o.tls_key, o.basic_auth_file,
                       cache=self.metrics_cache) if o.listen_port else None)
        where = f"/metrics on {o.listen_host}:{httpd.server_port}" if httpd else "no /metrics server"
        log.info("started: full sample every %g s, listeners every %g s, %s, state %s, %d receiver(s)",
                 o.interval, o.listener_interval, where, o.state_dir, len(o.receivers))
        self._reconcile()
        if self.delivery is not None:
            self.delivery.start()
        systemd.notify(f"READY=1\nSTATUS=sampling every {o.interval:g} s, {where}", os.environ)
        try:
            self._loop()
        finally:
            systemd.notify("STOPPING=1", os.environ)
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
            if self.delivery is not None:
                self.delivery.stop()
                self.delivery.join(timeout=15)
            self.keeper.close()
            self.poller.close()
            self.netns.close()
        log.info("stopped")
        return 0

    def _reconcile(self) -> None:
        if not self.opts.receivers:
            return
        store, outbox = self.keeper.get(), self.keeper.outbox()
        if store is None or outbox is None:
            return
        try:
            reconcile(store, outbox, self.opts.receivers, self.instance(None), self.clock.time())
        except StateError as exc:
            self.keeper.failed(exc)

    def _loop(self) -> None:
        next_full = self.clock.monotonic()
        every = systemd.watchdog_seconds(os.environ, os.getpid())
        next_ping = self.clock.monotonic()
        while not self.stopping:
            if every is not None and self.clock.monotonic() >= next_ping:
                systemd.notify("WATCHDOG=1", os.environ)  # the loop turns: samples are being taken
                next_ping = self.clock.monotonic() + every
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if self.clock.monotonic() >= next_full:
                self._guarded(self.full_sample)
                next_full += self.opts.interval
                next_full = max(next_full, self.clock.monotonic())
            else:
                self._guarded(self.listener_poll)
            now = self.clock.monotonic()
            wait = min(next_full, now + self.opts.listener_interval, next_ping if every else next_full) - now
            if wait > 0 and not self.stopping:
                self.wake.wait(wait)
                self.wake.clear()

    def _guarded(self, step: Callable[[], None]) -> None:
        """A failure of one sample is logged (once per kind and message), never fatal."""
        kind = step.__name__
        try:
            step()
            self._last_error.pop(kind, None)
        except Exception as exc:  # the agent must outlive any one bad sample
            message = f"{type(exc).__name__}: {exc}"
            self.source_errors["sample"] = self.source_errors.get("sample", 0) + 1
            if message != self._last_error.get(kind):
                log.error("%s failed (%s); continuing with the next one", kind.replace("_", " "), message,
                          exc_info=log.isEnabledFor(logging.DEBUG))
            self._last_error[kind] = message

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.config.rules

    def reload(self) -> None:
        try:
            config = load_config(self.opts.config)
        except Exception as exc:  # ConfigError; anything else is a bug, which must not stop the agent
            problem = str(exc) if isinstance(exc, ConfigError) else (
                f"{self.opts.config}: internal error: {type(exc).__name__}: {exc}")
            self.reload_failures += 1
            self.config_ok = False
            log.error("config reload refused: %s; keeping the %d rules in force", problem, len(self.rules))
            return
        self.config, self.config_ok = config, True
        self.steady.clear()  # new rules: every namespace judged afresh
        log.info("config reloaded from %s: %d rules", self.opts.config or "built-in defaults", len(config.rules))

    def instance(self, snap: Snapshot | None) -> str:
        if self.opts.instance:
            return self.opts.instance
        if snap is not None and snap.host.hostname:
            return snap.host.hostname
        import socket

        return socket.gethostname()

    # -- sampling --------------------------------------------------------------

    def _sample(self, opts: CollectOptions) -> list[Snapshot]:
        """One snapshot per namespace `--netns` selects (own first: agent/netns_sample.py); collect() alone for
        the own one. The other namespaces' listeners are then polled between full samples too (their peaks)."""
        if self.opts.netns == "own" or not ProcFS(self.opts.proc_root).is_live:
            # both families in one walk, per family where the kernel refuses that (collect._first_dump)
            return [collect(self.clock, opts)]
        return self.netns.sample(opts)

    def _collect(self) -> list[Snapshot]:
        why = self.known.needs(not self.prev, self.raised, self.poller.last, self.clock.monotonic())
        owners, refresh = why is not None, why == "refresh"
        # A due TIME_WAIT dump (every 12th sample or so) is the other states' dump plus TIME_WAIT alone, each
        # one walk; the TIME_WAIT replies are then counted column-wise: at 100k sockets (90 % TIME_WAIT)
        # 104 ms of CPU against 123 ms for one dump of every state (bench/profile_agent.py).
        opts = CollectOptions(proc_root=self.opts.proc_root, use_netlink=self.opts.use_netlink, owners=owners,
                              destination_owners=not refresh or any(
                                  a.attribute in TIME_WAIT_ATTRIBUTES for a in self.alerts),
                              owner_hints=self.known.hints() if refresh else None,
                              time_wait=self.time_wait, split_time_wait=self.time_wait is not None)
        start = time.perf_counter()
        snaps = self._sample(opts)
        self._count_time_wait(snaps)
        raw = snaps
        if owners:
            self.known.scanned(snaps, self.clock.monotonic())
        else:
            snaps = self.known.owned_samples(snaps)
        self._sampled = {s.netns.inode: (r.listeners, s.listeners) for r, s in zip(raw, snaps, strict=True)
                         if s.netns is not None and not s.netns.own and all(x.queue == 0 for x in r.listeners)}
        self.sample_seconds["full"] = time.perf_counter() - start
        self.samples["full"] += 1
        for snap in snaps:
            for status in snap.statuses:
                if not status.ok:
                    self.source_errors[status.name] = self.source_errors.get(status.name, 0) + 1
            self._say_limitations(snap.limitations)
        return snaps

    def _count_time_wait(self, snaps: list[Snapshot]) -> None:
        """Forget the TIME_WAIT aggregates of namespaces gone; count the samples that dumped TIME_WAIT."""
        if self.time_wait is not None:
            count_time_wait(self.time_wait, snaps, self.samples, self.netns.served)

    def _plan_time_wait(self, results: list[CheckResult]) -> None:
        """Dump TIME_WAIT every sample in a namespace while an attribute judged from it is near a threshold."""
        if self.time_wait is not None:
            plan_time_wait(self.time_wait, self.rules, results)

    def _say_limitations(self, notes: Sequence[str]) -> None:
        """Log what the samples cannot see (e.g. owners invisible without privileges), each kind once:
        counts in the text change from sample to sample, the kind does not."""
        for note in notes:
            kind = re.sub(r"\d+", "N", note)
            if kind not in self._limits_said:
                self._limits_said.add(kind)
                log.warning("cannot see everything: %s", note)

    @gc_paused  # (see full_sample)
    def listener_poll(self) -> None:
        start = time.perf_counter()
        listeners = self.poller.poll(self.clock)
        polled = self.netns.others.poll() if self.netns.others else {}
        self.sample_seconds["listeners"] = time.perf_counter() - start
        self.samples["listeners"] += 1
        others: dict[int, tuple[Listener, ...] | None] = {}
        fresh: list[Listener] = []
        owned = self._own_owned(listeners, fresh)
        for inode, got in polled.items():
            last = self._polled.get(inode)
            if got is not None and last is not None and last[0] is got:
                others[inode] = last[1]  # the poll reused its last dump (collect_netns.py): peaks and owners as then
                continue
            others[inode] = None if got is None else tuple(self.known.owned(x) for x in got)
            if got is not None:
                self._polled[inode] = (got, others[inode] or ())
                fresh.extend(got)
        for lst in fresh:
            if lst.queue > self.peaks.get(lst.identity, -1):
                self.peaks[lst.identity] = lst.queue
        self.collector.update_listeners(owned, dict(self.peaks), self.stats(), others)
        self.metrics_cache.invalidate()

    def _own_owned(self, listeners: tuple[Listener, ...], fresh: list[Listener]) -> tuple[Listener, ...]:
        """The own namespace's polled listeners with their known owners. The poller's tuple is the same object
        while every reply is byte for byte the last poll's (agent/poll.py): then its queues are in self.peaks
        already and its owned copy is the one made then (both reset by each full sample); else its listeners
        go to `fresh` (their queues into the peaks). Measured (17 idle listeners, 100k sockets on the host; CPU per
        poll, 5 runs of 100 polls): 0.41-0.54 ms instead of 0.61-0.82 ms."""
        last = self._own_polled
        if last is not None and last[0] is listeners:
            return last[1]
        fresh.extend(listeners)
        owned = tuple(self.known.owned(x) for x in listeners)
        self._own_polled = (listeners, owned)
        return owned

    @gc_paused
    def full_sample(self) -> None:
        """Every selected namespace judged against its own previous full sample (a namespace seen for the
        first time is only remembered: no deltas yet, so no false reject).

        The cyclic GC is paused while a sample is taken, judged and turned into /metrics families (it runs
        again after it): a sample allocates tens of thousands of acyclic objects that all survive it, and
        with `--netns all` over 100 namespaces (160k objects alive) the collections they triggered were
        ~155 ms of every 5 s, a third of the agent's CPU (141 collections, one of them full, per sample and
        its four listener polls; 1 collection, 13 ms, when paused)."""
        snaps = self._collect()
        results = []
        before = {a.key: a.severity for a in self.alerts}
        queued = {k: v for k, v in self.peaks.items() if v > 0}  # (a peak of 0 raises no queue)
        for cur in snaps:
            judged = with_peaks(cur, queued)
            key = _ns_key(cur)
            prev = self.prev.get(key)
            if prev is None:
                continue
            reused = reusable(self.steady.get(key), prev, judged) if self.reuse_judgements else None
            if reused is not None:  # a namespace standing still: its last judgement stands (agent/steady.py)
                self.samples["judgements_reused"] = self.samples.get("judgements_reused", 0) + 1
                results.append(reused)
                continue
            result = self._judge(prev, judged)
            results.append(result)
            if (kept := steady_after(prev, judged, result)) is not None:
                self.steady[key] = kept
            else:
                self.steady.pop(key, None)
        for line in (x for r in results for x in log_lines(before, r.step, r.current.taken_at)):
            log.info("%s", line)  # raised, severity changed, cleared: one line each, in check's words
        self._plan_time_wait(results)
        self._retire_vanished(snaps[0])
        if results:
            self.alerts = tuple(a for r in results for part in (r.step.raised, r.step.updated,
                                                                r.step.still_active_clean) for a in part)
            self.raised = any(r.step.raised for r in results)
            if self.delivery is not None and self.keeper.up:
                self.delivery.judged.set()  # every namespace judged and saved: Alertmanager may be compared
            # /metrics: the attribute values of every namespace (labelled with it)
            self.measured = tuple(r.measurements for r in results)
            self.measurements = tuple(m for block in self.measured for m in block)
        self.prev = {_ns_key(s): s for s in snaps}
        self.steady = {k: v for k, v in self.steady.items() if k in self.prev}
        peaks, self.peaks = self.peaks, {}
        self._polled = dict(self._sampled)  # (new peaks, maybe new owners; the dumps of queues all 0 as polled)
        self._own_polled = None
        own = snaps[0]
        self.collector.update(View(own, own.listeners, peaks, self.alerts, self.stats(), self.measurements,
                                   namespaces=tuple(snaps[1:]), measured=self.measured))
        self.metrics_cache.invalidate()

    def _retire_vanished(self, own: Snapshot) -> None:
        """Step the alerts of namespaces gone from the host (engine.retire_vanished) and queue their resolve:
        when the namespaces on the host changed, at the first sample, and while some are still counting."""
        store = self.keeper.get()
        present = self.netns.present
        if not self.netns.retire_due or present is None or store is None:
            return
        try:
            stepped = retire_vanished(store, present, own.taken_at)
        except StateError as exc:
            self.keeper.failed(exc)
            return
        if not self._queue(stepped, self.instance(own), own.taken_at):
            return
        self.netns.retire_due = bool(stepped.still_active_clean)
        for alert in stepped.cleared:
            log.info("%s", cleared_line(alert, own.taken_at))

    def _judge(self, prev: Snapshot, cur: Snapshot) -> CheckResult:
        store = self.keeper.get()
        name = self.instance(cur)
        result = judge(prev, cur, self.config, store, system_name=name)
        if store is None:
            return result
        if result.store_error is not None:
            self.keeper.failed(StateError(result.store_error))
        else:
            self._queue(result.step, name, cur.taken_at)
        return result

    def _queue(self, step: StepResult, name: str, now: float) -> bool:
        """A saved step's notifications queued for the receivers, the delivery woken for them; False (logged)
        when the state dir refused."""
        try:
            outbox = self.keeper.outbox() if self.opts.receivers else None
            if outbox is not None:
                enqueue(outbox, self.opts.receivers, step.raised + step.updated, step.cleared, name, now)
        except StateError as exc:
            self.keeper.failed(exc)
            return False
        if self.keeper.succeeded():
            self._reconcile()  # queue what the failed writes could not
        if self.delivery is not None and (step.raised or step.updated or step.cleared):
            self.delivery.wake.set()
        return True

    def stats(self) -> AgentStats:
        pending, sent, failures = self.delivery.counts() if self.delivery else ({}, {}, {})
        timeouts = self.delivery.timeout_counts() if self.delivery else {}
        return AgentStats(samples=dict(self.samples), sample_seconds=dict(self.sample_seconds),
                          source_errors=dict(self.source_errors), state_up=self.keeper.up,
                          state_errors=self.keeper.errors, reload_failures=self.reload_failures,
                          config_ok=self.config_ok, pending=pending, sent=sent, failures=failures,
                          timeouts=timeouts)


def _ns_key(snap: Snapshot) -> tuple[int, str] | None:
    """A namespace's identity across samples (None: the own namespace of a collect() sample)."""
    n = snap.netns
    return None if n is None or n.own else (n.inode, n.key)
