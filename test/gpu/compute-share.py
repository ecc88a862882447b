#!/usr/bin/env python3
"""compute-share.py: measures how the broker splits GPU time between pods by compute share.

Starts test/gpu/broker_host with two pods (shares S1 and S2), runs compute_share through the shim
in one pod alone (the whole GPU), then in both at once over the same window, and prints kernels
finished per pod, their ratio against S1/S2, and the broker's per-pod turn and wait times. Exit 1
when a program fails or the measured ratio is off by more than --tolerance (relative).
  compute-share.py --broker-host PATH --backend soft|cuda --shim-dir DIR --program PATH
                   [--shares 75,25] [--seconds 5] [--cycles N] [--tolerance 0.10] [--workers N]"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def run_window(prog, env_for, pods, seconds, cycles):
    start_ms = int((time.time() + 2.0) * 1000)  # after every program's cuInit and module load
    procs = [subprocess.Popen([prog, str(start_ms), str(seconds), str(cycles)], env=env_for(p),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in pods]
    counts = []
    for p, pr in zip(pods, procs):
        out, err = pr.communicate(timeout=seconds + 120)
        m = re.search(r"kernels=(\d+)", out)
        if pr.returncode != 0 or not m or "compute_share: OK" not in out:
            print("pod %s: compute_share failed (exit %d)\n%s%s" % (p, pr.returncode, out, err))
            return None
        counts.append(int(m.group(1)))
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker-host", required=True)
    ap.add_argument("--backend", default="soft")
    ap.add_argument("--shim-dir", required=True)
    ap.add_argument("--program", required=True)
    ap.add_argument("--shares", default="75,25")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--cycles", type=int, default=1000000)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pod-processes", default=None)
    a = ap.parse_args()
    s1, s2 = (int(x) for x in a.shares.split(","))
    d = tempfile.mkdtemp(prefix="vgpu-share.")
    cmd = [a.broker_host, "--backend", a.backend, "--workers", str(a.workers),
           "--pod", "A=%s/a.sock,share=%d" % (d, s1), "--pod", "B=%s/b.sock,share=%d" % (d, s2)]
    if a.pod_processes:
        cmd += ["--pod-processes", a.pod_processes]
    log = open(os.path.join(d, "broker.log"), "w+")
    broker = subprocess.Popen(cmd, stderr=log)
    for _ in range(300):
        if all(os.path.exists("%s/%s.sock" % (d, x)) for x in "ab"):
            break
        time.sleep(0.05)

    def env_for(pod):
        e = dict(os.environ)
        e["VGPU_SOCKET"] = "%s/%s.sock" % (d, pod.lower())
        e["LD_LIBRARY_PATH"] = a.shim_dir + (":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
        return e

    ok = True
    alone = run_window(a.program, env_for, ["A"], a.seconds, a.cycles)
    both = run_window(a.program, env_for, ["A", "B"], a.seconds, a.cycles)
    broker.send_signal(signal.SIGTERM)
    brc = broker.wait(timeout=120)
    log.seek(0)
    blog = log.read()
    if alone is None or both is None or brc != 0:
        print("FAIL: program or broker failed (broker exit %d)\n%s" % (brc, blog))
        return 1
    ca, cb = both
    want = s1 / s2
    got = ca / cb if cb else float("inf")
    print("backend %s, kernel %d cycles, window %.1f s, shares A=%d B=%d" % (a.backend, a.cycles, a.seconds, s1, s2))
    print("alone:    A kernels=%d (%.1f/s)" % (alone[0], alone[0] / a.seconds))
    print("together: A kernels=%d B kernels=%d, A+B = %.2f x alone" % (ca, cb, (ca + cb) / max(alone[0], 1)))
    print("ratio A/B = %.3f, wanted %.3f (shares), off by %+.1f%%" % (got, want, (got / want - 1) * 100))
    for line in blog.splitlines():
        if "broker_host: pod" in line:
            m = re.search(r"pod (\w+):.*busy ([\d.]+) ms, turns ([\d.]+) ms, waited ([\d.]+) ms", line)
            if m:
                print("broker: pod %s turns %s ms, waited %s ms, busy(waited on GPU) %s ms" %
                      (m.group(1), m.group(3), m.group(4), m.group(2)))
    if abs(got / want - 1) > a.tolerance:
        print("FAIL: ratio off by more than %.0f%%" % (a.tolerance * 100))
        ok = False
    print("compute-share: %s" % ("OK" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
