"""Script texts the decoder comparisons run inside a namespace (test_tw_run_live.py, test_full_run_live.py):
a recording of real sock_diag dumps, and the tables a SocketAggregator ends with."""

from __future__ import annotations


def dump_script(dumps: dict[str, str]) -> str:
    """A script printing, as JSON, the reply chunks (hex) of each named dump (name: an expression of its
    states, with `netlink` and `TCPF_TIME_WAIT` in scope), both in one walk and per family."""
    named = ", ".join(f"({name!r}, {states})" for name, states in dumps.items())
    return f"""import json, socket, sys
from connwatch.collect import TCPF_TIME_WAIT
from connwatch.sources import netlink
out = {{}}
for name, states in ({named},):
    for walk in ("one", "per-family"):
        chunks = []
        def consume(c):
            chunks.append(c.hex())
            return len(c) >= 20 and int.from_bytes(c[-16:-14], sys.byteorder) == 3  # ends with NLMSG_DONE
        sock = netlink.open_socket()
        if walk == "one":
            netlink.dump_both_families(sock, states, 0, consume)
        else:
            netlink.dump(sock, socket.AF_INET, states, 0, consume)
            netlink.dump(sock, socket.AF_INET6, states, 0, consume)
        sock.close()
        out[f"{{name}} {{walk}}"] = chunks
print(json.dumps(out))
"""


# The head of a comparison script: the namespace's listening ports, the recorded dumps from stdin, and
# state(agg), every table in insertion order (summary() first: it keys the runs still waiting, agg.pending).
COMPARE_HEAD = """import json, sys
from connwatch.collect import netlink_listeners
from connwatch.parsers.sock_diag import SocketAggregator
from connwatch.sources import netlink
sock = netlink.open_socket()
ports = frozenset(x.port for x in netlink_listeners(sock, []))
sock.close()
dumps = json.loads(sys.stdin.read())

def state(agg):
    summary = agg.summary()
    return repr([agg.total, agg.by_state, list(agg.destinations.items()), list(agg.owner_inodes.items()),
                 [(p, list(a.items())) for p, a in agg.sources.items()], list(agg.closed.items()),
                 list(agg.accepts.items()), summary])
"""
