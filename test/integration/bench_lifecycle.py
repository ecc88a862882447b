#!/usr/bin/python3
"""Lifecycle benchmark (not a test): latency of RunPodSandbox, CreateContainer, StartContainer,
StopContainer, RemoveContainer, ExecSync (median and p95 over N runs), RunPodSandbox+Create+Start of
a busybox container, and the time to start M pods concurrently, against the real daemon with a
busybox image from a local registry. Results go to docs/bench/lifecycle.md by hand.

    VGPU_BUILD_DIR=build /usr/bin/python3 test/integration/bench_lifecycle.py [-n 50] [-m 50]
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry as R  # noqa: E402
from conftest import Daemon, remove_tree  # noqa: E402
from pods_common import busybox_full_layer, container_config, pod_config  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def summary(name, ms):
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    print("| %-34s | %7.1f | %7.1f | %7.1f | %4d |" % (name, statistics.median(ms), p95, max(ms), len(ms)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50, help="runs per call")
    ap.add_argument("-m", type=int, default=50, help="concurrent pods")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vgpu-bench-", dir="/tmp")
    reg = R.Registry(os.path.join(work, "reg"))
    d = None
    try:
        reg.push_image("bench/busybox", "1", [busybox_full_layer()], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
        ref = "%s/bench/busybox:1" % reg.host
        os.makedirs(os.path.join(work, "d"))
        d = Daemon(os.path.join(work, "d"), {"log_level": "info",
                                             "grpc": {"workers": 16, "fast_workers": 2}})
        pb, rt = d.pb, d.runtime
        d.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        res = {k: [] for k in ("RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync",
                               "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox",
                               "Run+Create+Start (busybox)")}
        for i in range(args.n):
            cfg = pod_config(pb, "bench-%d" % i, log_dir=os.path.join(work, "logs", str(i)))
            pod, t_run = timed(lambda: rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id)
            cc = container_config(pb, "c", ref, command=["sleep", "1000"], log_path="c.log")
            cid, t_create = timed(lambda: rt.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=pod, config=cc, sandbox_config=cfg), timeout=60).container_id)
            _, t_start = timed(lambda: rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60))
            _, t_exec = timed(lambda: rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10),
                                                   timeout=30))
            _, t_stop = timed(lambda: rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0),
                                                        timeout=60))
            _, t_rm = timed(lambda: rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60))
            _, t_stopp = timed(lambda: rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60))
            _, t_rmp = timed(lambda: rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60))
            for k, v in zip(res, (t_run, t_create, t_start, t_exec, t_stop, t_rm, t_stopp, t_rmp,
                                  t_run + t_create + t_start)):
                res[k].append(v)
        print("| call | median ms | p95 ms | max ms | runs |\n|---|---|---|---|---|")
        for k, v in res.items():
            summary(k, v)
        # M pods at once, each with one started container.
        errors = []
        done_at = []

        def one(i):
            try:
                cfg = pod_config(pb, "conc-%d" % i)
                pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
                cid = rt.CreateContainer(pb.CreateContainerRequest(
                    pod_sandbox_id=pod, sandbox_config=cfg,
                    config=container_config(pb, "c", ref, command=["sleep", "1000"])), timeout=120).container_id
                rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
                done_at.append(time.perf_counter())
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.m)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = (time.perf_counter() - t0) * 1000
        print("\n%d pods (RunPodSandbox+CreateContainer+StartContainer each) concurrently: %.0f ms total, "
              "%d errors" % (args.m, total, len(errors)))
        for e in errors[:3]:
            print("  error:", e)
        items = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items
        t0 = time.perf_counter()
        for p in items:
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=120)
        print("removing them one by one: %.0f ms" % ((time.perf_counter() - t0) * 1000))
    finally:
        if d:
            d.terminate()
        reg.stop()
        remove_tree(work)


if __name__ == "__main__":
    main()
