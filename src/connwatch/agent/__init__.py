"""The long-running agent behind `connwatch run`: sampling loop, /metrics server, notification outbox."""
