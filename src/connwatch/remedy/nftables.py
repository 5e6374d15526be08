"""nftables rules that limit concurrent connections per source to one port (`ct count over N`).

The generated file is an `nft -f` script. Per port it declares, in table `inet connwatch`, one
dynamic set per address family keyed by the source address (or its prefix) and a chain on the
input hook; each set element carries a connlimit (`ct count`), so the kernel counts the tracked
connections of each source separately and the rule rejects (TCP reset: the client sees
ECONNREFUSED at once instead of retrying for two minutes) a new connection from a source that
already holds N. Established traffic is not touched (`ct state new`). A set counts only the
connections that passed the rule, so connections open before the file is applied are not counted.
Applying the file again (e.g. with a new limit) replaces the port's rules and empties its sets
(chain and sets are flushed first); other ports' chains are left alone.
Syntax as in the nftables wiki ("Meters", "Connlimits") and nft(8), checked with nft 1.0.6.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "connwatch"


@dataclass(frozen=True, slots=True)
class PerSourceLimit:
    port: int
    limit: int  # connections allowed per source; the next one is refused
    ipv4_prefix: int | None = None  # count per network of this length instead of per address
    ipv6_prefix: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 1-65535")
        if not 1 <= self.limit <= 10000:
            raise ValueError(f"limit {self.limit} out of range 1-10000")

    @property
    def chain(self) -> str:
        return f"limit_p{self.port}"

    def set_name(self, version: int) -> str:
        return f"src{version}_p{self.port}"


def _mask(version: int, prefix: int | None) -> str:
    """The `and MASK` of the set key when counting per network, '' per address."""
    bits = 32 if version == 4 else 128
    if prefix is None or prefix >= bits:
        return ""
    value = ((1 << prefix) - 1) << (bits - prefix)
    if version == 4:
        return " and " + ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
    import ipaddress

    return f" and {ipaddress.IPv6Address(value)}"


def render(spec: PerSourceLimit) -> str:
    """The nft script for one port and limit."""
    who = {4: "ip saddr" + _mask(4, spec.ipv4_prefix), 6: "ip6 saddr" + _mask(6, spec.ipv6_prefix)}
    unit = "source" if spec.ipv4_prefix is None and spec.ipv6_prefix is None else "source network"
    lines = [
        f"# connwatch: at most {spec.limit} concurrent connections per {unit} to TCP port {spec.port}.",
        "# Apply: nft -f THIS_FILE   (as root; lasts until reboot: include it from /etc/nftables.conf).",
        "# Connections open before it is applied are not counted.",
        f"# Watch: nft list chain inet {TABLE} {spec.chain}   (the counter shows refused connections)",
        f"# Remove: nft delete chain inet {TABLE} {spec.chain}; nft delete set inet {TABLE} "
        f"{spec.set_name(4)}; nft delete set inet {TABLE} {spec.set_name(6)}",
        f"table inet {TABLE} {{",
    ]
    for version, addr in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        lines += [f"    set {spec.set_name(version)} {{", f"        type {addr}", "        size 65535",
                  "        flags dynamic", "    }"]
    lines += [f"    chain {spec.chain} {{", "        type filter hook input priority filter; policy accept;",
              "    }", "}", f"flush chain inet {TABLE} {spec.chain}",
              *(f"flush set inet {TABLE} {spec.set_name(v)}" for v in (4, 6))]
    for version in (4, 6):
        lines.append(
            f"add rule inet {TABLE} {spec.chain} tcp dport {spec.port} ct state new "
            f"add @{spec.set_name(version)} {{ {who[version]} ct count over {spec.limit} }} "
            f"counter reject with tcp reset comment \"connwatch: over {spec.limit} per {unit}\"")
    return "\n".join(lines) + "\n"
