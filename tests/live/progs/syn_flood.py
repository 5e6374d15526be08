"""Send COUNT bare TCP SYNs to DST:PORT from distinct addresses of SRC_NET (a /16 on the namespace's lo).

Raw socket with IP_HDRINCL (stdlib only); each SYN goes out once (the sender keeps no state, so no
retries). The test makes these half-open handshakes by dropping the SYN-ACKs toward SRC_NET with an
nft rule inside the namespace, so nothing answers them and nothing leaves the namespace.
Bounded: at most 5000 SYNs. Prints "READY sent=N".
"""

import argparse
import ipaddress
import random
import socket
import struct

p = argparse.ArgumentParser()
p.add_argument("--dst", default="198.18.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--src-net", default="198.19.0.0/16")
p.add_argument("--count", type=int, default=100)
a = p.parse_args()
assert 0 < a.count <= 5000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    ihl_ver, tos, tot_len, ident, frag, ttl, proto = 0x45, 0, 40 + 4, 0, 0x4000, 64, socket.IPPROTO_TCP
    ip = struct.pack("!BBHHHBBH4s4s", ihl_ver, tos, tot_len, ident, frag, ttl, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    mss = struct.pack("!BBH", 2, 4, 1460)  # MSS option: a normal SYN
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (6 << 4), 0x02, 65535, 0, 0) + mss
    pseudo = struct.pack("!4s4sBBH", socket.inet_aton(src), socket.inet_aton(dst), 0, proto, len(header))
    header = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
    return ip + header


net = ipaddress.ip_network(a.src_net)
hosts = net.hosts()
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
sent = 0
for _ in range(a.count):
    src = str(next(hosts))
    raw.sendto(syn(src, a.dst, random.randint(20000, 60000), a.port, random.getrandbits(32)), (a.dst, 0))
    sent += 1
print(f"READY sent={sent}", flush=True)
