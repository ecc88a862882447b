#!/usr/bin/python3
"""Streaming benchmark (a program, not a test): exec round-trip latency (`exec true`, token minted
through the CRI handler, full SPDY or WebSocket session) and port-forward throughput over
loopback, against vgpu-stream-testd (the real server with the host TEST BACKEND).

    VGPU_BUILD_DIR=build-stream /usr/bin/python3 test/integration/bench_streaming.py [--n 200] [--mib 256]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import streaming_client as sc  # noqa: E402
from test_streaming import TestD  # noqa: E402

SINK = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    mode = c.recv(1)
    if mode == b"d":          # discard what comes, then answer with the byte count
        n = 0
        while True:
            b = c.recv(1 << 20)
            if not b: break
            n += len(b)
        c.sendall(str(n).encode())
    else:                     # source: send N MiB
        n = int(c.recv(32))
        blk = b"x" * (1 << 20)
        for _ in range(n): c.sendall(blk)
    c.close()
"""


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def bench_exec(d, n, ws):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        url = d.exec_url(["true"], stderr=False)
        r = sc.ws_exec(url) if ws else sc.spdy_exec(url, stderr=False)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.exit_code == 0
    return lat


def bench_pf(d, port, mib, tunnel):
    pf = sc.PortForward(d.cmd(op="portforward", id="bench"), tunnel=tunnel)
    blk = b"y" * 32768
    # upload
    err, data = pf.open(port)
    pf.c.send_data(data, b"d")
    t0 = time.perf_counter()
    for _ in range(mib * 32):
        pf.c.send_data(data, blk)
    pf.c.send_data(data, b"", fin=True)
    s = pf.c.streams
    pf.c.pump(lambda: s[data].fin, timeout=120)
    up = mib / (time.perf_counter() - t0)
    assert int(bytes(s[data].data)) == mib * (1 << 20) + 0, bytes(s[data].data)
    # download
    err, data = pf.open(port)
    pf.c.send_data(data, b"s" + str(mib).encode())
    t0 = time.perf_counter()
    pf.c.pump(lambda: s[data].fin, timeout=120)
    down = mib / (time.perf_counter() - t0)
    assert len(s[data].data) == mib << 20
    pf.close()
    return up, down


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--mib", type=int, default=256)
    a = ap.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    d = TestD()
    try:
        print("vgpu-cri streaming benchmark (host test backend, loopback, %d CPUs)" % os.cpu_count())
        for ws in (False, True):
            bench_exec(d, 10, ws)  # warm up
            lat = bench_exec(d, a.n, ws)
            print("exec true round trip, %-9s n=%d: median %.2f ms, p90 %.2f ms, p99 %.2f ms" % (
                "websocket" if ws else "spdy", a.n, statistics.median(lat), pct(lat, 90), pct(lat, 99)))
        for tunnel in (False, True):
            up, down = bench_pf(d, port, a.mib, tunnel)
            print("port-forward %-16s %d MiB: upload %.0f MiB/s, download %.0f MiB/s" % (
                "ws-tunnel spdy" if tunnel else "spdy", a.mib, up, down))
    finally:
        d.stop()
        sink.kill()


if __name__ == "__main__":
    main()
