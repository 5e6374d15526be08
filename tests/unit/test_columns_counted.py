"""columns.counted: occurrences of each code in order of first appearance, as Counter gives them, whichever
way it counts (bytes.count per distinct byte; byte planes renumbered into one byte; Counter)."""

from __future__ import annotations

from array import array
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.parsers import columns

WIDTHS = {1: "B", 2: "H", 4: "I", 8: "Q"}


@st.composite
def codes(draw: st.DrawFn) -> bytes | array[int]:
    """Codes of 1 to 8 bytes from a pool of a few (or many) values, some of them differing in one byte
    plane only, some in several planes, some with more than DENSE_DISTINCT distinct bytes in a plane."""
    width = draw(st.sampled_from(list(WIDTHS)))
    top = 2 ** (8 * width) - 1
    base = draw(st.integers(0, top))
    spread = st.one_of(st.integers(0, 3), st.integers(0, 40), st.integers(0, top))
    pool = draw(st.lists(spread.map(lambda d: (base ^ d) if draw(st.booleans()) else (base ^ (d << 8)) & top),
                         min_size=1, max_size=draw(st.sampled_from([3, 20, 300]))))
    values = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=400))
    if width == 1:
        return bytes(v & 255 for v in values)
    return array(WIDTHS[width], [v & top for v in values])


@settings(max_examples=500, deadline=None)
@given(codes())
def test_counted_equals_counter_in_order(values: bytes | array[int]) -> None:
    got = columns.counted(values)
    want = Counter(values)
    assert got == want and list(got) == list(want)


def test_few_distinct_codes_are_counted_densely_and_many_are_not() -> None:
    few = array("H", [0x0102, 0x0302, 0x0102, 0x0105, 0x0305] * 50)
    assert columns._densely_counted(few) == {0x0102: 100, 0x0302: 50, 0x0105: 50, 0x0305: 50}
    many = array("H", range(0, 600, 3))  # (more than DENSE_DISTINCT distinct low bytes)
    assert columns._densely_counted(many) is None and columns.counted(many) == Counter(many)
    assert columns._densely_counted(array("Q", [7] * 9)) is None  # (nothing varies: Counter)
    assert columns._distinct(b"\x03\x01\x03\x02") == [3, 1, 2] and columns._distinct(bytes(range(17))) is None
