#!/usr/bin/python3
"""Attach benchmark (not a test): on a real pod of the runc handler, through the daemon's streaming
server and the container monitor: the time to attach (Attach RPC, connect, streams, the monitor's
handshake) until a line sent to a `cat` container comes back, the round trip of one line through an
open attach (client -> daemon -> monitor -> cat -> monitor -> daemon -> client), and the output
throughput one attached client receives. Results go to docs/bench/streaming.md by hand.

    VGPU_BUILD_DIR=build /usr/bin/python3 test/integration/bench_attach_pods.py [-n 100] [--mib 32]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry as R  # noqa: E402
from conftest import Daemon, remove_tree  # noqa: E402
from pods_common import busybox_full_layer, container_config, pod_config  # noqa: E402
from streaming_client import RemoteCommand  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def line(name, ms):
    print("%-44s n=%d: median %.2f ms, p90 %.2f ms, p99 %.2f ms" % (
        name, len(ms), statistics.median(ms), pct(ms, 90), pct(ms, 99)))


def attach(d, cid, transport, stdin=True):
    url = d.runtime.Attach(d.pb.AttachRequest(container_id=cid, stdin=stdin, stdout=True, stderr=True),
                           timeout=10).url
    return RemoteCommand(url, transport, stdin=stdin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--mib", type=int, default=32)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vgpu-bench-attach-", dir="/tmp")
    reg = R.Registry(os.path.join(work, "reg"))
    d = None
    try:
        reg.push_image("bench/busybox", "1", [busybox_full_layer()], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
        ref = "%s/bench/busybox:1" % reg.host
        os.makedirs(os.path.join(work, "d"))
        d = Daemon(os.path.join(work, "d"), {"log_level": "info"})
        pb, rt = d.pb, d.runtime
        d.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        cfg = pod_config(pb, "bench-attach", log_dir=os.path.join(work, "logs"))
        pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id

        def container(name, command, stdin):
            cc = container_config(pb, name, ref, command=command, log_path=name + ".log")
            cc.stdin = stdin
            cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=cc, sandbox_config=cfg),
                                     timeout=60).container_id
            rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
            return cid

        cat = container("cat", ["cat"], True)
        # writes N x 512 KiB when it reads N, in 4 KiB lines (so that the CRI log's one write per
        # line is not what is measured)
        src = container("src", ["sh", "-c", "l=$(head -c 4095 /dev/zero | tr '\\0' x); "
                                "while read n; do yes $l | head -c $((n*524288)); echo END; done"], True)
        print("vgpu-cri attach benchmark (runc pod, loopback, %d CPUs, load %.1f)" % (
            os.cpu_count(), os.getloadavg()[0]))
        for transport in ("spdy", "ws"):
            setup, rtt = [], []
            for i in range(a.n):
                t0 = time.perf_counter()
                s = attach(d, cat, transport)
                s.send(b"hello %d\n" % i)
                assert s.read_until(lambda s: (b"hello %d\n" % i) in s.stdout)
                setup.append((time.perf_counter() - t0) * 1000)
                s.close()
            s = attach(d, cat, transport)
            for i in range(a.n):
                want = b"ping %d\n" % i
                t0 = time.perf_counter()
                s.send(want)
                assert s.read_until(lambda s: s.stdout.endswith(want))
                rtt.append((time.perf_counter() - t0) * 1000)
            s.close()
            line("attach until the first echo, %s" % transport, setup)
            line("line round trip through attach, %s" % transport, rtt)
            # in bursts of 512 KiB, each asked for once the last one arrived: a client that falls
            # more than 1 MiB behind a container's output is detached by design (docs/streaming.md)
            s = attach(d, src, transport)
            out = s.buffer(1)
            t0 = time.perf_counter()
            for i in range(a.mib * 2):
                s.send(b"1\n")
                want = (i + 1) * (524288 + 4)
                assert s.read_until(lambda s: len(out) >= want and out.endswith(b"END\n"), timeout=60), len(out)
            print("%-44s %d MiB: %.0f MiB/s" % ("output in 512 KiB bursts, " + transport, a.mib,
                                                a.mib / (time.perf_counter() - t0)))
            s.close()
    finally:
        if d:
            for c in d.runtime.ListContainers(d.pb.ListContainersRequest(), timeout=30).containers:
                d.runtime.RemoveContainer(d.pb.RemoveContainerRequest(container_id=c.id), timeout=60)
            for p in d.runtime.ListPodSandbox(d.pb.ListPodSandboxRequest(), timeout=30).items:
                d.runtime.RemovePodSandbox(d.pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60)
            d.terminate()
        reg.stop()
        remove_tree(work)


if __name__ == "__main__":
    main()
