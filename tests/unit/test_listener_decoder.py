"""ListenerDecoder's hot loop (one unpack per reply, the rtattr walk skipped when the attributes before
SKMEMINFO are the previous reply's bytes) against its message-by-message reference (_messages/_decode)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.errors import ParseError, SourceUnavailable
from connwatch.model import Listener
from connwatch.parsers.sock_diag_listeners import ListenerDecoder, MemoListenerDecoder

FIX = Path(__file__).parents[1] / "fixtures" / "netlink"
_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
_ADDRS = [bytes([127, 0, 0, 1]) + b"\0" * 12, bytes(16), b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 9]),
          bytes(15) + b"\x01", bytes(range(16))]


def _attr(kind: int, payload: bytes, length: int | None = None) -> bytes:
    n = 4 + len(payload) if length is None else length
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-len(payload) % 4)


def _meminfo(drops: int, words: int = 9) -> bytes:
    return _attr(7, struct.pack(f"={words}I", *([0] * 8 + [drops])[:words]))


ATTRS = st.one_of(
    st.just(_attr(8, b"\0")),  # INET_DIAG_SHUTDOWN
    st.just(_attr(11, b"\x01")),  # INET_DIAG_SKV6ONLY
    st.builds(lambda m: _attr(15, struct.pack("=I", m)), st.integers(0, 3)),  # INET_DIAG_MARK
    st.builds(lambda c: _attr(21, struct.pack("=Q", c)), st.integers(0, 2)),  # INET_DIAG_CGROUP_ID
    st.builds(_meminfo, st.integers(0, 2**32 - 1)),
    st.builds(lambda d: _meminfo(d, 5), st.integers(0, 9)),  # too short to hold the drop counter
    st.just(b"\x02\x00\x07\x00"),  # rta_len < 4: malformed, the walk stops
)
LISTENERS = st.tuples(st.sampled_from([2, 10]), st.sampled_from([80, 8080, 65535]), st.sampled_from(_ADDRS),
                      st.integers(0, 2**32 - 1), st.integers(0, 4096), st.integers(0, 4096),
                      st.lists(ATTRS, max_size=4), st.integers(0, 3))


def _reply(fam: int, port: int, src: bytes, cookie: int, rq: int, wq: int, attrs: list[bytes], cut: int) -> bytes:
    body = _MSG.pack(fam, 10, 0, 0, struct.unpack("=H", port.to_bytes(2, "big"))[0], 0, src, bytes(16), 0,
                     cookie, cookie >> 7, 0, rq, wq, 0, cookie % 977 + 1) + b"".join(attrs)
    if cut == 1 and attrs:
        body = body[:-2]  # the last attribute cut short
    kind = 20 if cut != 2 else 18  # SOCK_DIAG_BY_FAMILY, or the legacy TCPDIAG_GETSOCK's reply
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body + b"\0" * (-len(body) % 4)


OTHER = st.sampled_from([
    struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4,  # NLMSG_DONE
    struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -2) + b"\0" * 16,  # error ENOENT
    struct.pack("=IHHII", 16, 1, 0, 1, 0),  # NLMSG_NOOP: skipped
    struct.pack("=IHHII", 40, 20, 0, 1, 0) + bytes(24),  # a reply shorter than inet_diag_msg
    struct.pack("=IHHII", 400, 20, 0, 1, 0) + bytes(40),  # a length past the chunk
])


def _outcome(call: Any, chunk: bytes) -> tuple[str, object]:
    try:
        return "ok", call(chunk)
    except (ParseError, SourceUnavailable) as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(LISTENERS.map(lambda t: _reply(*t)), OTHER), max_size=25), st.binary(max_size=12))
def test_the_hot_loop_decodes_as_each_message_alone(parts: list[bytes], tail: bytes) -> None:
    chunk = b"".join(parts) + tail
    fast: list[Listener] = []
    slow: list[Listener] = []
    reference = ListenerDecoder(slow)
    assert _outcome(ListenerDecoder(fast), chunk) == _outcome(lambda c: reference._messages(c, 0), chunk)
    assert fast == slow


def test_repeated_attributes_skip_the_walk_and_still_read_each_drop_counter() -> None:
    """Same attribute bytes before SKMEMINFO: the remembered place; then another layout (no SHUTDOWN, an extra
    MARK, an SKMEMINFO too short, none at all): walked again."""
    layouts = [[_attr(8, b"\0"), _meminfo(5)], [_attr(8, b"\0"), _meminfo(6)], [_meminfo(7)],
               [_attr(8, b"\0"), _attr(15, b"\1\0\0\0"), _meminfo(8)], [_attr(8, b"\0"), _meminfo(3, 5)], [],
               [_attr(8, b"\0"), _meminfo(9)]]
    chunk = b"".join(_reply(2, 80 + i, _ADDRS[0], i + 1, 0, 128, a, 0) for i, a in enumerate(layouts))
    found: list[Listener] = []
    assert not ListenerDecoder(found)(chunk + struct.pack("=IHHII", 16, 1, 0, 1, 0))
    assert [x.drops for x in found] == [5, 6, 7, 8, None, None, 9]
    assert [x.port for x in found] == list(range(80, 87)) and found[0].address == "127.0.0.1"


def test_recorded_dump_and_the_memo_decoder_agree() -> None:
    chunks = [bytes.fromhex(line) for line in (FIX / "listeners.hex").read_text().split()]
    fast: list[Listener] = []
    slow: list[Listener] = []
    memo: list[Listener] = []
    ref, remembered = ListenerDecoder(slow), MemoListenerDecoder(memo, {}, {})
    assert [ListenerDecoder(fast)(c) for c in chunks] == [ref._messages(c, 0) for c in chunks] == \
        [remembered(c) for c in chunks]
    assert fast == slow == memo and len(fast) >= 2 and any(x.drops for x in fast)


def test_attribute_bytes_past_the_reply_end_are_not_read_as_its_own() -> None:
    """A reply ending inside the SKMEMINFO header, padded with the rest of that header's bytes: the same
    bytes as the previous reply's, but past its end (the walk stops there: no drop counter)."""
    first = _reply(2, 80, _ADDRS[0], 1, 0, 128, [_attr(8, b"\0"), _meminfo(5)], 0)
    body = _MSG.pack(2, 10, 0, 0, 0x5000, 0, _ADDRS[0], bytes(16), 0, 2, 0, 0, 0, 128, 0, 9) + _attr(8, b"\0")
    header = _meminfo(6)[:4]
    second = struct.pack("=IHHII", 16 + len(body) + 2, 20, 2, 1, 0) + body + header  # 2 bytes of padding
    found: list[Listener] = []
    slow: list[Listener] = []
    chunk = first + second + _reply(2, 82, _ADDRS[0], 3, 0, 128, [_attr(8, b"\0"), _meminfo(7)], 0)
    assert not ListenerDecoder(found)(chunk) and not ListenerDecoder(slow)._messages(chunk, 0)
    assert [x.drops for x in found] == [x.drops for x in slow] == [5, None, 7]


def test_the_decoders_stay_importable_from_sock_diag_without_loading_them_with_it() -> None:
    """They moved to parsers/sock_diag_listeners.py: the old import path gives the same classes, loaded only
    when asked for (analyze and the other users of sock_diag do not load them)."""
    code = ("import sys\nimport connwatch.parsers.sock_diag as sd\n"
            "assert 'connwatch.parsers.sock_diag_listeners' not in sys.modules\n"
            "from connwatch.parsers.sock_diag import ListenerDecoder, MemoListenerDecoder\n"
            "from connwatch.parsers import sock_diag_listeners as sl\n"
            "assert (ListenerDecoder, MemoListenerDecoder) == (sl.ListenerDecoder, sl.MemoListenerDecoder)\n"
            "try:\n    sd.NoSuchName\nexcept AttributeError:\n    print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "ok\n", done.stderr
