#!/usr/bin/env python3
"""Write the seed inputs in fuzz/seeds/<target>/ (run from anywhere).

parse_head input: [mode][h][t][cut u16 LE] + request bytes. mode 0x00 = config-valid limits
(max_header_size = 256 + 8*h, max_target_size = min(16 + 8*t, max_header_size)).

conn input: [n] + control[n] + request bytes. control = [limits selector]
[responder selector] then ops; selector 0 = the unit tests' limits (header
1024, target 256, body 100) and responder 0 (404.html, no dotfiles). Ops
(first byte % 16): 0 Feed(u16 len), 4 Send(u16 n) (or, with a write in
flight, n more of its bytes reported), 5 Write(u16 n) (an asynchronous write
starts: segments cloned, nothing reported yet), 6 Drain(u16 chunk), 8 Eof,
9 Error, 10 Advance(u16 * 4 ms), 11 Deadline, 13 Timeout, 14
BeginShutdown(u16 grace ms), 15 HandleShutdown. Integers are little-endian.
A target with "?parts" gets its body cut into several segments.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def feed(n): return b"\x00" + struct.pack("<H", n)
def send(n): return b"\x04" + struct.pack("<H", n)
def write(n): return b"\x05" + struct.pack("<H", n)
def drain(chunk): return b"\x06" + struct.pack("<H", chunk)
EOF_, ERROR, DEADLINE, TIMEOUT, HSHUT = b"\x08", b"\x09", b"\x0b", b"\x0d", b"\x0f"
def advance(ms): return b"\x0a" + struct.pack("<H", ms // 4)
def shutdown(grace_ms): return b"\x0e" + struct.pack("<H", grace_ms)


def conn(ops, req, limits=b"\x00", responder=b"\x00"):
    ctl = limits + responder + b"".join(ops) if ops or responder != b"\x00" else b""
    assert len(ctl) < 256
    return bytes([len(ctl)]) + ctl + req


def get(path, extra=b"", method=b"GET", version=b"1.1"):
    host = b"Host: x\r\n" if version == b"1.1" else b""
    return method + b" " + path + b" HTTP/" + version + b"\r\n" + host + extra + b"\r\n"


PARSE = {
    "get": get(b"/a.txt"),
    "headers": get(b"/x?q=1", b"User-Agent: ua/1\r\nReferer: http://r/\r\nIf-None-Match: \"e\"\r\n"
                   b"If-Modified-Since: Fri, 13 Nov 2026 08:00:00 GMT\r\nConnection: keep-alive, close\r\n"),
    "body": get(b"/", b"Content-Length: 3, 3\r\n") + b"abc",
    "te": get(b"/", b"Transfer-Encoding: chunked\r\n"),
    "http10": b"\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "version": b"GET / HTTP/2.0\r\n\r\n",
    "partial": b"GET /a.txt HTTP/1.",
}

CONN = {
    "get": conn([], get(b"/a.txt")),
    "pipelined_split": conn([feed(7), drain(1), feed(30), send(3), feed(100), drain(5)],
                            get(b"/a.txt") + get(b"/missing") + b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
                            + get(b"/")),
    "head_big_partial": conn([feed(1000), send(10), send(200), drain(700)],
                             get(b"/big.bin", method=b"HEAD") + get(b"/big.bin")),
    "body_discard": conn([feed(40), feed(3), drain(9)],
                         get(b"/a.txt", b"Content-Length: 5\r\n") + b"hello" + get(b"/sub")),
    "too_large": conn([], get(b"/", b"Content-Length: 101\r\n") + get(b"/a.txt")),
    "bad_then_more": conn([feed(5), drain(100), HSHUT, feed(100)], b"GARBAGE\r\n\r\n" + get(b"/")),
    "http10": conn([], get(b"/empty.txt", version=b"1.0") + get(b"/a.txt", b"Connection: keep-alive\r\n", version=b"1.0")),
    "paths": conn([feed(1000), drain(64)],
                  b"".join(get(p) for p in [b"/sub", b"/sub/", b"/emptydir/", b"/noindex/", b"/.hidden",
                                            b"/link.txt", b"/linkdir/", b"/leak.txt", b"/leakdir/secret.txt",
                                            b"/sub/x%20y.css", b"/%2e%2e/secret/secret.txt", b"/a.txt/"])),
    "dotfiles": conn([], get(b"/.hidden") + get(b"/nope"), responder=b"\x02"),
    "head_timeout": conn([feed(20), advance(10000), feed(5), DEADLINE, drain(1000), DEADLINE],
                         get(b"/a.txt")),
    "keepalive_timeout": conn([feed(1000), drain(1000), DEADLINE, feed(10)], get(b"/a.txt") + get(b"/")),
    "send_timeout": conn([feed(1000), send(10), advance(61000), TIMEOUT], get(b"/big.bin")),
    "shutdown_idle": conn([feed(1000), drain(1000), shutdown(0)], get(b"/a.txt") + get(b"/")),
    "shutdown_grace": conn([feed(34), drain(1000), shutdown(2000), advance(1000), feed(1000), drain(1000)],
                           get(b"/a.txt") + get(b"/")),
    "shutdown_inflight": conn([feed(1000), shutdown(0), send(3), drain(2)], get(b"/a.txt") + get(b"/")),
    "eof_inflight": conn([feed(1000), EOF_, drain(4)], get(b"/big.bin") + get(b"/")),
    "error": conn([feed(10), ERROR, feed(10), DEADLINE], get(b"/a.txt")),
    "small_limits": conn([feed(300), drain(1000)], b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                         limits=b"\x01\x00\x00\x00\x00\x10\x00\xe8\x03\xe8\x03\xe8\x03"),
    # A write in flight while input, EOF, a drain, a timeout or an error comes.
    "inflight_input": conn([feed(40), write(30), feed(1000), EOF_, send(10), send(5), drain(100)],
                           get(b"/a.txt") + get(b"/big.bin")),
    "inflight_shutdown": conn([feed(40), write(1000), shutdown(0), feed(100), drain(7)],
                              get(b"/a.txt") + get(b"/")),
    "inflight_timeout": conn([feed(1000), write(100), advance(61000), send(50)], get(b"/big.bin")),
    "inflight_error": conn([feed(1000), write(500), ERROR, send(600)], get(b"/big.bin")),
    "parts": conn([feed(1000), write(200), send(7), feed(1000), drain(3)],
                  get(b"/big.bin?parts") + get(b"/a.txt?parts") + get(b"/missing?parts")
                  + get(b"/empty.txt?parts") + get(b"/sub?parts"), responder=b"\x01"),
}

for target, seeds, prefix in [("parse_head", PARSE, b"\x00\xff\x7f\x10\x00"), ("conn", CONN, b"")]:
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(prefix + data)
