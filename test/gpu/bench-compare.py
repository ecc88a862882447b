#!/usr/bin/env python3
"""bench-compare.py NATIVE SHIM: the bench's RESULT lines side by side, with ratios and the
issue-5 targets (shim vs native, from the same run)."""
import sys

def load(path):
    r = {}
    for line in open(path, errors="replace"):
        p = line.split()
        if len(p) >= 4 and p[0] == "RESULT":
            r[p[1]] = (float(p[2]), p[3])
    return r

nat, shm = load(sys.argv[1]), load(sys.argv[2])
# name: (target description, check(native, shim) -> bool)
targets = {
    "idle_ctx_sync_us": ("<= 2 us", lambda n, s: s <= 2.0),
    "launch_sync_us": ("<= 1.3x native", lambda n, s: s <= 1.3 * n),
    "async_launch_per_s": (">= 0.9x native", lambda n, s: s >= 0.9 * n),
    "htod_4B_us": ("<= native + 2 us", lambda n, s: s <= n + 2),
    "dtoh_4B_us": ("<= native + 2 us", lambda n, s: s <= n + 2),
    "htod_256MiB_pinned_GBps": (">= 0.9x native", lambda n, s: s >= 0.9 * n),
    "dtoh_256MiB_pinned_GBps": (">= 0.9x native", lambda n, s: s >= 0.9 * n),
    "htod_256MiB_pageable_GBps": (">= native", lambda n, s: s >= n),
}
print("| figure | native | shim | shim/native | target | met |")
print("|---|---|---|---|---|---|")
for k in list(nat) + [k for k in shm if k not in nat]:
    n = nat.get(k, (float("nan"), ""))
    s = shm.get(k, (float("nan"), ""))
    unit = n[1] or s[1]
    ratio = s[0] / n[0] if n[0] else float("nan")
    t, met = targets.get(k, ("", None)), ""
    if k in targets and k in nat and k in shm:
        met = "yes" if targets[k][1](n[0], s[0]) else "NO"
    print(f"| {k} ({unit}) | {n[0]:.4g} | {s[0]:.4g} | {ratio:.3f} | {t[0]} | {met} |")
