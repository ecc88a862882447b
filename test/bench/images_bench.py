#!/usr/bin/python3
"""Benchmark (not a test): pull a ~100 MiB multi-layer image from a local docker-registry through
the daemon's CRI, cold (empty store) and warm (already stored), and measure the unpack rate alone.
Prints the numbers recorded in docs/bench/images.md.

    /usr/bin/python3 test/bench/images_bench.py [--build-dir build] [--mib 100] [--layers 4]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))


def collect_files(limit):
    """Real files (libraries, binaries, text) from /usr, up to limit bytes: compresses like an image."""
    out, total = [], 0
    for top in ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share", "/usr/lib"):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(root, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    size = os.path.getsize(p)
                except OSError:
                    continue
                if size == 0 or size > 16 << 20:
                    continue
                out.append(p)
                total += size
                if total >= limit:
                    return out, total
    return out, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(SOURCE_DIR, "build"))
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--warm-runs", type=int, default=10)
    args = ap.parse_args()
    os.environ["VGPU_BUILD_DIR"] = args.build_dir
    os.environ["VGPU_CRI_BIN"] = os.path.join(args.build_dir, "cri", "vgpu-cri")
    sys.path.insert(0, os.path.join(SOURCE_DIR, "test", "integration"))
    import registry as R
    from conftest import Daemon, remove_tree

    work = tempfile.mkdtemp(prefix="vgpu-img-bench-", dir="/tmp")
    reg = R.Registry(work)
    daemon = None
    try:
        files, total = collect_files(args.mib << 20)
        # layers of about equal size (of files), so that they can be unpacked in parallel
        tars = [R.Tar() for _ in range(args.layers)]
        done = 0
        for p in files:
            i = min(done * args.layers // total, args.layers - 1)
            tars[i].host_file("layer%d%s" % (i, p), p, 0o644)
            done += os.path.getsize(p)
        layers = [t.bytes() for t in tars]
        img = reg.push_image("bench/big", "1", layers)
        compressed = sum(s for _, _, s in img.layers)
        print("image: %d layers, %.1f MiB of files, %.1f MiB compressed (gzip)" %
              (args.layers, total / 1048576, compressed / 1048576))

        # the registry alone: how fast can the blobs be fetched at all
        import http.client
        t0 = time.time()
        for d, _, _ in img.layers:
            c = http.client.HTTPConnection("127.0.0.1", reg.port)
            c.request("GET", "/v2/bench/big/blobs/" + d)
            r = c.getresponse()
            while r.read(1 << 20):
                pass
            c.close()
        fetch = time.time() - t0
        print("registry fetch of all blobs (python client, sequential): %.0f ms, %.0f MiB/s" %
              (fetch * 1000, compressed / 1048576 / fetch))

        os.makedirs(os.path.join(work, "daemon"))
        daemon = Daemon(os.path.join(work, "daemon"), {"log_level": os.environ.get("BENCH_LOG_LEVEL", "info")})
        pb = daemon.pb
        ref = "%s/bench/big:1" % reg.host
        req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
        t0 = time.time()
        daemon.image.PullImage(req, timeout=600)
        cold = time.time() - t0
        print("cold pull: %.0f ms (%.1f MiB/s of files end to end)" % (cold * 1000, total / 1048576 / cold))
        warm = []
        for _ in range(args.warm_runs):
            t0 = time.time()
            daemon.image.PullImage(req, timeout=60)
            warm.append(time.time() - t0)
        print("warm pull: median %.1f ms, max %.1f ms over %d runs" %
              (statistics.median(warm) * 1000, max(warm) * 1000, len(warm)))
        bench = os.path.join(args.build_dir, "test", "bench", "image_unpack_bench")
        blobs = [reg.blob_path(d) for d, _, _ in img.layers]
        out = subprocess.run([bench, work] + blobs, check=True, capture_output=True, text=True).stdout
        print(out.strip().splitlines()[-1])
        with open(daemon.log_path) as f:
            for line in f:
                if "pull " + ref in line or ": unpacked " in line:
                    print("daemon: " + line.strip().split("  ", 1)[-1])
    finally:
        if daemon:
            daemon.terminate()
        reg.stop()
        remove_tree(work)


if __name__ == "__main__":
    main()
