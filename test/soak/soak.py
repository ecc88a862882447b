#!/usr/bin/python3
"""Soak and load of the vgpu-cri daemon on the runc handler: a bounded churn of pods and containers
(--pods in all, --parallel at once, every --gpu-every'th one a GPU pod on the broker's soft TEST
device running vector_add), optionally with --clients concurrent CRI clients calling List*/Status
all the while. Needs root; runs its own daemon on a temp root and socket (test/integration's
Daemon), its own registry and, unless --no-cni, its own CNI bridge (test_cni.Net).

The churn runs in rounds of --sample-every pods; between rounds nothing of the churn exists, and the
daemon's RSS, open fds, threads, the mounts under its root and the vgpu-monitor / vgpu-pause
processes of this build are sampled. After the run:

- fails (exit 1) when at the end RSS is above the highest sample up to the warm-up (--warmup pods)
  by more than --rss-slack-pct percent plus --rss-slack-kib, or fds or threads grew by more than
  --count-slack after the warm-up; when a quiet sample
  shows any mount, monitor or infra process of the churn; when any churn step or client call failed;
  when the daemon lists anything at the end or its state dirs are not empty;
- prints a table of the samples, the start/warm/end numbers, and the clients' p50/p99 latency per
  method (latency is reported, never asserted).

    sudo VGPU_BUILD_DIR=build-crash test/soak/soak.py --pods 2000 --parallel 10 --clients 100
"""
import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import grpc  # noqa: E402

from conftest import BUILD_DIR, Daemon, check_sanitizer_clean, remove_tree, _pb, _pb_grpc  # noqa: E402
import pods_common as P  # noqa: E402
import registry as R  # noqa: E402

PAUSE_BIN = os.path.realpath(os.path.join(BUILD_DIR, "cri", "vgpu-pause"))
MONITOR_BIN = os.path.realpath(os.path.join(BUILD_DIR, "cri", "vgpu-monitor"))
CLIENT_METHODS = ["ListPodSandbox", "ListContainers", "ListImages", "Status", "ListPodSandboxStats",
                  "ListContainerStats", "Version"]


def helper_processes(exe, state_dir=None):
    n = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.path.realpath("/proc/%s/exe" % p) != exe:
                continue
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % p) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if state_dir is None or state_dir.encode() in cmd:
            n += 1
    return n


def sample(d, pods_done, tag):
    pid = d.proc.pid
    with open("/proc/%d/status" % pid) as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    with open("/proc/self/mountinfo") as f:
        mounts = sum(1 for l in f if l.split()[4].startswith(d.workdir + "/"))
    pause = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.path.realpath("/proc/%s/exe" % p) == PAUSE_BIN:
                    with open("/proc/%s/cmdline" % p, "rb") as f:
                        pause += (tag + "-").encode() in f.read()
            except OSError:
                pass
    return {
        "pods": pods_done,
        "rss_kib": int(st["VmRSS"].split()[0]),
        "fds": len(os.listdir("/proc/%d/fd" % pid)),
        "threads": int(st["Threads"]),
        "mounts": mounts,
        "monitors": helper_processes(MONITOR_BIN, d.state_dir),
        "infra": pause,
        "t": time.time(),
    }


class Churn:
    def __init__(self, d, args, images, tag):
        self.d, self.args, self.tag = d, args, tag
        self.busybox, self.gpu_img = images
        self.next = 0
        self.lock = threading.Lock()
        self.errors = []
        self.gpu_pods = 0

    def take(self, limit):
        with self.lock:
            if self.next >= limit:
                return None
            self.next += 1
            return self.next - 1

    def one_pod(self, i):
        d, pb = self.d, self.d.pb
        gpu = self.args.gpu_every > 0 and i % self.args.gpu_every == 0 and self.gpu_img
        cfg = P.pod_config(pb, "%s-%d" % (self.tag, i), log_dir=os.path.join(self.d.workdir, "logs", str(i)))
        if gpu:
            cfg.annotations["vgpu.io/gpu"] = "true"
            cfg.annotations["vgpu.io/gpu-memory"] = "64Mi"
        pod = P.run_pod(d, cfg, timeout=120)
        try:
            if gpu:
                from test_gpu_pods import GPU_ENV
                c = P.create(d, pod, cfg, P.container_config(pb, "gpu", self.gpu_img, command=["vector_add"],
                                                             log_path="gpu.log", envs=GPU_ENV), timeout=120)
                P.start(d, c, timeout=120)
                st = P.wait_state(d, c, pb.CONTAINER_EXITED, timeout=120)
                if st.exit_code != 0:
                    raise AssertionError("pod %d: vector_add exit code %d" % (i, st.exit_code))
                with self.lock:
                    self.gpu_pods += 1
            else:
                c = P.create(d, pod, cfg, P.container_config(pb, "main", self.busybox, command=["sleep", "3600"],
                                                             log_path="main.log"), timeout=120)
                P.start(d, c, timeout=120)
                if i % 5 == 0:
                    out = d.runtime.ExecSync(pb.ExecSyncRequest(container_id=c, cmd=["echo", str(i)], timeout=30),
                                             timeout=60).stdout
                    if out != ("%d\n" % i).encode():
                        raise AssertionError("pod %d: exec said %r" % (i, out))
                d.runtime.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0), timeout=120)
                d.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=120)
        finally:
            d.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
            d.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)

    def worker(self, limit):
        while True:
            i = self.take(limit)
            if i is None:
                return
            try:
                self.one_pod(i)
            except Exception as e:  # noqa: BLE001 (every failure is reported)
                with self.lock:
                    self.errors.append("pod %d: %r" % (i, e))

    def round(self, limit):
        threads = [threading.Thread(target=self.worker, args=(limit,)) for _ in range(self.args.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


# ---- load: CRI clients in a few processes, one channel per client thread ----

def client_process(socket_path, n_threads, stop, think_ms, out_q, seed):
    from conftest import _pb as pb, _pb_grpc as pb_grpc
    lat = {m: [] for m in CLIENT_METHODS}
    errors = []
    lock = threading.Lock()

    def client(k):
        rng = random.Random(seed * 1000 + k)
        ch = grpc.insecure_channel("unix://" + socket_path)
        rt, im = pb_grpc.RuntimeServiceStub(ch), pb_grpc.ImageServiceStub(ch)
        calls = {
            "ListPodSandbox": lambda: rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30),
            "ListContainers": lambda: rt.ListContainers(pb.ListContainersRequest(), timeout=30),
            "ListImages": lambda: im.ListImages(pb.ListImagesRequest(), timeout=30),
            "Status": lambda: rt.Status(pb.StatusRequest(verbose=rng.random() < 0.1), timeout=30),
            "ListPodSandboxStats": lambda: rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=30),
            "ListContainerStats": lambda: rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=30),
            "Version": lambda: rt.Version(pb.VersionRequest(), timeout=30),
        }
        mine = {m: [] for m in CLIENT_METHODS}
        errs = []
        while not stop.is_set():
            m = rng.choice(CLIENT_METHODS)
            t0 = time.perf_counter()
            try:
                calls[m]()
                mine[m].append(time.perf_counter() - t0)
            except grpc.RpcError as e:
                errs.append("%s: %s %s" % (m, e.code(), e.details()))
            if think_ms:
                time.sleep(rng.uniform(0, 2 * think_ms) / 1000)
        ch.close()
        with lock:
            for m, v in mine.items():
                lat[m].extend(v)
            errors.extend(errs)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out_q.put((lat, errors))


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--gpu-every", type=int, default=10, help="every N'th pod is a GPU pod (0: none)")
    ap.add_argument("--sample-every", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--clients", type=int, default=0, help="concurrent CRI clients calling List*/Status")
    ap.add_argument("--client-procs", type=int, default=4)
    ap.add_argument("--think-ms", type=float, default=50, help="mean pause between a client's calls")
    ap.add_argument("--no-cni", action="store_true")
    ap.add_argument("--rss-slack-kib", type=int, default=8192)
    ap.add_argument("--rss-slack-pct", type=float, default=10)
    ap.add_argument("--count-slack", type=int, default=2, help="fds/threads allowed above the warm sample")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="start no new round after this long (0: no limit); the report says how far it got")
    ap.add_argument("--json", help="write the samples and results here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak.py needs root (namespaces, mounts, CNI)")
    args.warmup = min(args.warmup, args.pods)

    tag = "soak%04x" % random.randrange(1 << 16)
    work = tempfile.mkdtemp(prefix="vgpu-soak-", dir="/tmp")
    reg = net = d = None
    failures = []
    try:
        reg = R.Registry(os.path.join(work, "registry"))
        reg.push_image("test/busybox", "soak", [P.busybox_full_layer()], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
        busybox = "%s/test/busybox:soak" % reg.host
        gpu_img = None
        shim = os.path.join(BUILD_DIR, "shim", "libvgpu.so")
        cfg = {"log_level": "info", "grpc": {"workers": 8, "fast_workers": 4}}
        if args.gpu_every:
            import test_gpu_pods as G
            reg.push_image("test/cuda", "soak", [G.gpu_image_layer()], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
            gpu_img = "%s/test/cuda:soak" % reg.host
            cfg["gpu"] = {"backend": "soft", "shim_path": shim}
        if not args.no_cni:
            from test_cni import Net
            net = Net()
            cfg["cni"] = {"conf_dir": net.conf_dir, "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"]}
        # its own short temp dir: run/gpu/<64-hex id>/vgpu.sock must fit a unix socket path
        dwork = tempfile.mkdtemp(prefix="vgpu-sk-", dir="/tmp")
        d = Daemon(dwork, cfg)
        P.pull(d, busybox)
        if gpu_img:
            P.pull(d, gpu_img)
        churn = Churn(d, args, (busybox, gpu_img), tag)

        mp = multiprocessing.get_context("spawn")  # no fork of a process that has gRPC channels
        stop = mp.Event()
        q = mp.Queue()
        procs = []
        if args.clients:
            per = [args.clients // args.client_procs + (k < args.clients % args.client_procs)
                   for k in range(args.client_procs)]
            procs = [mp.Process(target=client_process, args=(d.socket, n, stop, args.think_ms, q, k))
                     for k, n in enumerate(per) if n]
            for p in procs:
                p.start()

        samples = [sample(d, 0, tag)]
        print("%6s %9s %5s %7s %6s %8s %5s %7s" % ("pods", "rss_kib", "fds", "threads", "mounts", "monitors",
                                                    "infra", "pods/s"), flush=True)

        def show(s, prev):
            rate = (s["pods"] - prev["pods"]) / max(1e-9, s["t"] - prev["t"]) if prev else 0
            print("%6d %9d %5d %7d %6d %8d %5d %7.2f" % (s["pods"], s["rss_kib"], s["fds"], s["threads"], s["mounts"],
                                                      s["monitors"], s["infra"], rate), flush=True)

        show(samples[0], None)
        t_start = time.time()
        done = 0
        while done < args.pods and not churn.errors:
            if args.max_seconds and time.time() - t_start > args.max_seconds:
                print("time budget of %.0f s spent: stopping after %d of %d pods" % (args.max_seconds, done, args.pods))
                break
            done = min(args.pods, done + args.sample_every)
            churn.round(done)
            samples.append(sample(d, done, tag))
            show(samples[-1], samples[-2])
        elapsed = time.time() - t_start
        stop.set()
        lat = {m: [] for m in CLIENT_METHODS}
        client_errors = []
        for _ in procs:
            l, e = q.get(timeout=120)
            for m, v in l.items():
                lat[m].extend(v)
            client_errors.extend(e)
        for p in procs:
            p.join(timeout=60)

        # ---- verdict ----
        failures += churn.errors[:20]
        failures += ["client: " + e for e in client_errors[:20]]
        if client_errors:
            failures.append("%d client calls failed" % len(client_errors))
        for s in samples:
            if s["mounts"] or s["monitors"] or s["infra"]:
                failures.append("after %d pods: %d mounts, %d monitors, %d infra processes left between rounds" % (
                    s["pods"], s["mounts"], s["monitors"], s["infra"]))
        warm = next((s for s in samples if s["pods"] >= args.warmup), samples[-1])
        end = samples[-1]
        # RSS between rounds is the allocator's high-water mark more than live data (the soft device's
        # buffers of GPU pods that ran at once stay in malloc arenas): the bound is the highest
        # sample up to the warm-up, plus the slack
        warm_peak = max(s["rss_kib"] for s in samples if s["pods"] <= warm["pods"])
        rss_bound = warm_peak * (1 + args.rss_slack_pct / 100) + args.rss_slack_kib
        if end["rss_kib"] > rss_bound:
            failures.append("RSS grew after warm-up: peak %d KiB up to %d pods, %d KiB at %d (bound %d)" % (
                warm_peak, warm["pods"], end["rss_kib"], end["pods"], rss_bound))
        for k in ("fds", "threads"):
            if end[k] > warm[k] + args.count_slack:
                failures.append("%s grew after warm-up: %d at %d pods, %d at %d" % (k, warm[k], warm["pods"], end[k],
                                                                                     end["pods"]))
        pb = d.pb
        left = (len(d.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items),
                len(d.runtime.ListContainers(pb.ListContainersRequest(), timeout=30).containers))
        if left != (0, 0):
            failures.append("listed at the end: %d pods, %d containers" % left)
        for sub in ("sandboxes", "containers", "exits"):
            leftover = os.listdir(os.path.join(d.state_dir, sub))
            if leftover:
                failures.append("state_dir/%s not empty: %s" % (sub, leftover[:5]))

        start = samples[0]
        print("\nsoak: %d pods (%d GPU pods on soft) in %.0f s (%.2f pods/s), %d in parallel, %d clients" % (
            end["pods"], churn.gpu_pods, elapsed, end["pods"] / max(elapsed, 1e-9), args.parallel, args.clients))
        print("%-8s %10s %10s %10s" % ("", "start", "warm", "end"))
        print("%-8s %10s %10s %10s" % ("pods", start["pods"], warm["pods"], end["pods"]))
        for k in ("rss_kib", "fds", "threads", "mounts", "monitors", "infra"):
            print("%-8s %10d %10d %10d" % (k, start[k], warm[k], end[k]))
        after = [s for s in samples if s["pods"] >= warm["pods"]]
        print("RSS: peak up to warm-up %d KiB, max after %d KiB, bound %d KiB" % (
            warm_peak, max(s["rss_kib"] for s in after), rss_bound))
        if args.clients:
            total = sum(len(v) for v in lat.values())
            print("\nload: %d clients, %d calls in %.0f s (%.0f/s), %d errors" % (
                args.clients, total, elapsed, total / max(elapsed, 1e-9), len(client_errors)))
            print("%-22s %8s %9s %9s %9s" % ("method", "calls", "p50 ms", "p99 ms", "max ms"))
            for m in CLIENT_METHODS:
                v = lat[m]
                print("%-22s %8d %9.2f %9.2f %9.2f" % (m, len(v), pct(v, 50) * 1e3, pct(v, 99) * 1e3,
                                                      (max(v) if v else float("nan")) * 1e3))
            allv = [x for v in lat.values() for x in v]
            print("%-22s %8d %9.2f %9.2f %9.2f" % ("all", len(allv), pct(allv, 50) * 1e3, pct(allv, 99) * 1e3,
                                                  (max(allv) if allv else float("nan")) * 1e3))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "samples": samples, "failures": failures, "elapsed_s": elapsed,
                           "latency_ms": {m: {"n": len(v), "p50": pct(v, 50) * 1e3, "p99": pct(v, 99) * 1e3}
                                          for m, v in lat.items()}}, f, indent=1)
        rc = d.terminate()
        if rc != 0:
            failures.append("daemon exit code %s on SIGTERM" % rc)
        check_sanitizer_clean(d.log())
    except Exception as e:  # noqa: BLE001
        failures.append("soak aborted: %r" % e)
        if d is not None:
            print(d.log()[-3000:])
    finally:
        if d is not None and d.proc and d.proc.poll() is None:
            d.kill()
        if net is not None:
            net.cleanup()
        if reg is not None:
            reg.stop()
        for path in (work, d.workdir if d is not None else None):
            if path and os.environ.get("VGPU_KEEP_TEST_DIRS"):
                print("kept", path)
            elif path:
                remove_tree(path)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("\nOK")


if __name__ == "__main__":
    main()
