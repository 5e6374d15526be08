from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netns import Netns, netns, why_no_netns


@pytest.fixture
def ns() -> Iterator[Netns]:
    reason = why_no_netns()
    if reason:
        pytest.skip(reason)
    with netns() as made:
        yield made
