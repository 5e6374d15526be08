"""The /metrics body rendered at most once per sample and format, not once per scrape.

The agent calls invalidate() after each full sample and each listener poll (the only times the
series change); the first scrape after that renders the text (lazily: no scrape, no rendering) and
every later scrape until the next sample is served the same bytes. Concurrent scrapes wait for one
rendering instead of each doing its own. The process_* series (client_python's ProcessCollector)
are then those of the sample's moment, at most one --listener-interval old.
"""

from __future__ import annotations

import gzip
import threading

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

Headers = list[tuple[str, str]]


class MetricsCache:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._render = threading.Lock()
        self._generation = 0
        self._bodies: dict[tuple[str, bool], tuple[int, bytes]] = {}  # (content type, gzip) -> (generation, body)
        self.renders = 0

    def invalidate(self) -> None:
        """The series changed: the next scrape renders them again (cheap: no lock, no rendering here)."""
        self._generation += 1

    def response(self, accept: str | None, accept_encoding: str | None) -> tuple[Headers, bytes]:
        """(headers, body) as prometheus_client's WSGI app would answer, from the cache when current."""
        encoder, content_type = choose_encoder(accept or "")
        zipped = gzip_accepted(accept_encoding or "")
        key = (content_type, zipped)
        headers = [("Content-Type", content_type), *([("Content-Encoding", "gzip")] if zipped else [])]
        with self._render:
            generation = self._generation  # read first: an invalidate() during rendering is not lost
            cached = self._bodies.get(key)
            if cached is not None and cached[0] == generation:
                return headers, cached[1]
            body = encoder(self._registry)
            if zipped:
                body = gzip.compress(body)
            self._bodies[key] = (generation, body)
            self.renders += 1
        return headers, body
