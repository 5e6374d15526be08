"""Numbers read from text: bounded so that a mutated or corrupt capture cannot crash what follows.

The kernel prints counters, queues, pids and ports as at most 64-bit decimals (%lu: 20 digits).
A longer run of digits is not something any tool printed: it is refused here as a ValueError
(callers turn it into a ParseError naming the line), so it never reaches Python's int-from-str
digit limit (4,300 digits) or a float conversion that overflows later.
"""

from __future__ import annotations

MAX_DIGITS = 20  # 18446744073709551615 (2**64 - 1)
_HEX_DIGITS = "0123456789abcdefABCDEF"

# The checks below are str methods, not regular expressions: `re` (its import and the patterns compiled at
# the import of the parsers), with json's (outputs/jsontext.py), was 9.1 M of the 95.7 M instructions of a
# `snapshot` to its first kernel read (callgrind, issue 17).
# tests/unit/test_parser_predicates.py compares each with the expression it stands for.


def is_decimal(text: str) -> bool:
    """`text` is -?[0-9]+ (ASCII digits: str.isdigit alone takes other scripts' digits and superscripts)."""
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def is_word(text: str, underscore: bool = True) -> bool:
    """`text` is [A-Za-z][A-Za-z0-9_]* ([A-Za-z][A-Za-z0-9]* without `underscore`)."""
    rest = text.replace("_", "") if underscore else text
    return text[:1].isalpha() and text.isascii() and rest.isalnum()


def num(text: str) -> int:
    """A decimal integer of at most MAX_DIGITS ASCII digits (optional leading minus); else ValueError."""
    if not (is_decimal(text) and len(text.lstrip("-")) <= MAX_DIGITS):  # (-?[0-9]{1,20})
        raise ValueError(f"not a number the kernel prints: {_cut(text)!r}")
    return int(text)


def hexnum(text: str) -> int:
    """A hexadecimal integer of at most 16 digits (64 bits), as /proc/net/tcp prints them; else ValueError."""
    if not (0 < len(text) <= 16 and not text.strip(_HEX_DIGITS)):  # ([0-9A-Fa-f]{1,16})
        raise ValueError(f"not a hexadecimal field: {_cut(text)!r}")
    return int(text, 16)


def real(text: str) -> float:
    """A finite decimal number (seconds, rates); 'nan', 'inf' and overflowing exponents are a ValueError."""
    if len(text) > 40:
        raise ValueError(f"number too long: {_cut(text)!r}")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {_cut(text)!r}")
    return value


def _cut(text: str) -> str:
    return text if len(text) <= 30 else text[:30] + "..."


def port(text: str) -> int:
    """A TCP port number 0-65535 in decimal; else ValueError."""
    value = num(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} outside 0-65535")
    return value
