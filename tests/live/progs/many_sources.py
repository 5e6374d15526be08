"""Connect from many loopback source addresses (127.S.x.y, bound first) to HOST:PORT and hold (bounded).

Source i of this process is 127.(base + a // 256).(a % 256).(b) with a, b = divmod(first + i, 254), b + 1,
so processes given disjoint --first ranges use disjoint addresses. Prints READY <sockets> once every
connect() was started; the caller polls the server side for completion.
"""

import argparse
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--first", type=int, default=0, help="index of this process's first source")
p.add_argument("--sources", type=int, default=100)
p.add_argument("--per-source", type=int, default=1)
p.add_argument("--base", type=int, default=10, help="second octet of the first address")
p.add_argument("--hold", type=float, default=60.0)
a = p.parse_args()
assert a.sources * a.per_source <= 15000, "keep under the 20,000 fd limit"


def address(index: int) -> str:
    high, low = divmod(index, 254)
    return f"127.{a.base + high // 256}.{high % 256}.{low + 1}"


socks = []
for i in range(a.first, a.first + a.sources):
    src = address(i)
    for _ in range(a.per_source):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.setblocking(False)
        s.connect_ex((a.host, a.port))
        socks.append(s)
print("READY", len(socks), flush=True)
time.sleep(a.hold)
