#!/usr/bin/env python3
"""Put a busybox image into an image store for the Xen test bed's dom0 (which has no network):
push it to a real local registry (test/integration/registry.py: Debian's docker-registry), pull it
with our own daemon on the host (a temp state dir and socket) through cri-client, stop the daemon.
The caller copies <out>/state/images into the dom0 initramfs; <out>/image-ref holds the reference
the daemon knows the image by. With GPU_TREE (scenario `gpu`), a second image test/gpu:xen is
busybox plus that directory tree (a CUDA driver-API test program, the libraries it needs but
libcuda.so.1, its PTX, the Xen transport's attack program); its reference goes to
<out>/image-ref-gpu.

    seed-image.py DAEMON CRI_CLIENT OUT_DIR [GPU_TREE]
"""
import json
import os
import signal
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
import registry as R  # noqa: E402


def busybox_layer():
    applets = subprocess.run([R.BUSYBOX, "--list"], stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    t = R.Tar().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700)
    t.host_file("bin/busybox", R.BUSYBOX, 0o755)
    for app in applets:
        if app != "busybox" and "/" not in app:
            t.symlink("bin/" + app, "busybox")
    t.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    t.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    return t.bytes()


def tree_layer(root):
    """A layer of every directory, file and symlink under root (paths relative to it)."""
    t = R.Tar()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        rel = os.path.relpath(d, root)
        if rel != ".":
            t.dir(rel)
        for f in sorted(files):
            src = os.path.join(d, f)
            name = os.path.normpath(os.path.join(rel, f))
            if os.path.islink(src):
                t.symlink(name, os.readlink(src))
            else:
                t.host_file(name, src)
    return t.bytes()


def pull(client, sock, ref):
    r = subprocess.run([client, "-s", sock, "-t", "120", "pull", ref], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0 or not r.stdout.startswith("CRI image "):
        sys.exit("seed-image: pull %s failed: %s" % (ref, r.stdout.strip()))
    print(r.stdout.strip(), file=sys.stderr)


def main():
    daemon_bin, client, out = sys.argv[1:4]
    gpu_tree = sys.argv[4] if len(sys.argv) > 4 else None
    os.makedirs(out, exist_ok=True)
    reg = R.Registry(os.path.join(out, "registry"))
    daemon = None
    try:
        reg.push_image("test/busybox", "xen", [busybox_layer()],
                       config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
        ref = "%s/test/busybox:xen" % reg.host
        sock = os.path.join(out, "run", "cri.sock")
        cfg = {"socket": sock, "state_dir": os.path.join(out, "state"), "run_dir": os.path.join(out, "run"),
               "log_level": "info", "gpu": {"backend": "none"},
               "runtime_handlers": {"runc": {"type": "runc", "runtime_root": os.path.join(out, "runc")}}}
        cfg_path = os.path.join(out, "config.yaml")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        log = open(os.path.join(out, "daemon.log"), "ab")
        daemon = subprocess.Popen([daemon_bin, "--config", cfg_path], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while subprocess.run([client, "-s", sock, "-t", "5", "version"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit("seed-image: the daemon did not come up (see %s/daemon.log)" % out)
            time.sleep(0.3)
        pull(client, sock, ref)
        with open(os.path.join(out, "image-ref"), "w") as f:
            f.write(ref + "\n")
        if gpu_tree:
            reg.push_image("test/gpu", "xen", [busybox_layer(), tree_layer(gpu_tree)],
                           config={"Cmd": ["sh"], "Env": ["PATH=/bin:/opt/gpu"], "WorkingDir": "/"})
            gref = "%s/test/gpu:xen" % reg.host
            pull(client, sock, gref)
            with open(os.path.join(out, "image-ref-gpu"), "w") as f:
                f.write(gref + "\n")
    finally:
        if daemon and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        reg.stop()


if __name__ == "__main__":
    main()
