"""Building blocks of the mixed loads the live tests run in a namespace (imported by their LOAD scripts):
listeners that end a connection the way asked, and bounded connect+close cycles.

serve(): server_first False = the client closes first (client-side TIME_WAIT: the server waits for the
client's FIN), True = the server closes at once (server-side TIME_WAIT), None = accepted and held open;
accept=False leaves connections in the accept queue. An AF_INET6 listener is dual-stack.
"""

import socket
import threading
from collections.abc import Callable


def serve(family: int, addr: str, port: int, server_first: bool | None, backlog: int = 512,
          accept: bool = True) -> socket.socket:
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((addr, port))
    s.listen(backlog)
    kept = []

    def loop() -> None:
        while accept:
            c, _ = s.accept()
            if server_first is None:  # held open
                kept.append(c)
                continue
            if not server_first:  # the client closes first and keeps the TIME_WAIT
                c.settimeout(5)
                while c.recv(64):
                    pass
            c.close()

    threading.Thread(target=loop, daemon=True).start()
    return s


def cycle(family: int, dst: tuple[str, int], src: Callable[[int], str] | None = None, server_first: bool = False,
          n: int = 100) -> None:
    """n connect+close cycles toward dst (bounded: a 5 s timeout each), from src(i) when given."""
    for i in range(n):
        c = socket.socket(family)
        c.settimeout(5)
        if src is not None:
            c.bind((src(i), 0))
        c.connect(dst)
        if server_first:  # wait for the server's FIN: the server side ends in TIME_WAIT
            assert c.recv(1) == b""
        c.close()
