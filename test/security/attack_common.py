"""Helpers of the pod attack suite (test_attacks_*.py): the integration tests' CRI client and
daemon fixtures (test/integration/conftest.py, pods_common.py, registry.py), and an attacker
image: busybox, the attacker's programs pod_probe and pod_cuda_thief (test/security), the
libraries they need, and the soft device's test kernels. Not a test module itself."""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import pytest  # noqa: E402

import registry as R  # noqa: E402
from conftest import BUILD_DIR, SOURCE_DIR, remove_tree  # noqa: E402,F401
from pods_common import (APPLETS, container_config, create, exec_sync, pod_config, read_cri_log,  # noqa: E402
                         log_text, run_pod, start, status, wait_for, wait_state)

SHIM = os.path.join(BUILD_DIR, "shim", "libvgpu.so")
PROBE = os.path.join(BUILD_DIR, "test", "security", "pod_probe")
CUDA_THIEF = os.path.join(BUILD_DIR, "test", "security", "pod_cuda_thief")
VECTOR_ADD = os.path.join(BUILD_DIR, "test", "gpu", "vector_add")
PTX = os.path.join(SOURCE_DIR, "test", "gpu", "kernels.ptx")
# Sanitizer builds of the programs must not run LeakSanitizer (ptrace) inside a container.
GPU_ENV = {"VGPU_KERNELS_PTX": "/kernels.ptx", "ASAN_OPTIONS": "detect_leaks=0", "VGPU_SPIN_NS": "20000"}
SOFT_GPU = {"gpu": {"backend": "soft", "shim_path": SHIM}}
MIB = 1 << 20


def ldd_libs(path):
    """Host paths of the shared libraries path needs (libcuda.so.1 is the shim's: skipped)."""
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, check=True, text=True).stdout
    libs = []
    for line in out.split("\n"):
        parts = line.split()
        if not parts or parts[0].startswith(("libcuda.so", "linux-vdso")):
            continue
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
            libs.append(parts[parts.index("=>") + 1])
        elif parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class Layer:
    """A layer tar with parent directories made on demand."""

    def __init__(self):
        self.t = R.Tar()
        self.made = set()

    def mkdirs(self, path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.made:
                self.made.add(d)
                self.t.dir(d, 0o1777 if d == "tmp" else mode)
        return self


def attacker_layer(extra=None):
    """busybox + pod_probe + pod_cuda_thief + their libraries + kernels.ptx; extra(layer) adds more."""
    L = Layer()
    for d in ("bin", "etc", "tmp", "mnt", "var/log", "usr/lib/x86_64-linux-gnu", "run"):
        L.mkdirs(d)
    t = L.t
    t.host_file("bin/busybox", R.BUSYBOX, 0o755)
    for app in APPLETS:
        if app != "busybox" and "/" not in app:
            t.symlink("bin/" + app, "busybox")
    t.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    t.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    libs = set()
    for prog in (PROBE, CUDA_THIEF, VECTOR_ADD):
        t.host_file("bin/" + os.path.basename(prog), prog, 0o755)
        libs.update(ldd_libs(prog))
    for lib in sorted(libs):
        L.mkdirs(os.path.dirname(lib))
        t.host_file(lib.lstrip("/"), lib, 0o755)
    t.host_file("kernels.ptx", PTX, 0o644)
    if extra:
        extra(L)
    return t.bytes()


@pytest.fixture(scope="module")
def registry():
    d = tempfile.mkdtemp(prefix="vgpu-sec-reg-", dir="/tmp")
    reg = R.Registry(d)
    yield reg
    reg.stop()
    remove_tree(d)


@pytest.fixture(scope="module")
def attacker_image(registry):
    registry.push_image("sec/attacker", "1", [attacker_layer()],
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    return "%s/sec/attacker:1" % registry.host


def gpu_pod(daemon, name, log_dir, share_pid=False, memory=None):
    cfg = pod_config(daemon.pb, name, log_dir=log_dir, share_pid=share_pid)
    cfg.annotations["vgpu.io/gpu"] = "true"
    if memory:
        cfg.annotations["vgpu.io/gpu-memory"] = memory
    return cfg, run_pod(daemon, cfg)


def plain_pod(daemon, name, log_dir, share_pid=False):
    cfg = pod_config(daemon.pb, name, log_dir=log_dir, share_pid=share_pid)
    return cfg, run_pod(daemon, cfg)


def run_container(daemon, pod_id, pod_cfg, img, name, cmd, envs=None, mounts=None, resources=None, wait=True):
    env = dict(GPU_ENV)
    env.update(envs or {})
    cfg = container_config(daemon.pb, name, img, command=cmd, log_path=name + ".log", envs=env, mounts=mounts,
                           resources=resources)
    cid = create(daemon, pod_id, pod_cfg, cfg)
    start(daemon, cid)
    if wait:
        wait_state(daemon, cid, daemon.pb.CONTAINER_RUNNING)
    return cid


def sh(daemon, cid, script, timeout=30):
    r = exec_sync(daemon, cid, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def finish(daemon, cid, timeout=60):
    """Wait for the container's exit: (exit code, its output as text)."""
    st = wait_state(daemon, cid, daemon.pb.CONTAINER_EXITED, timeout=timeout)
    return st.exit_code, log_output(st.log_path)


def log_output(path):
    return b"\n".join(log_text(read_cri_log(path))).decode(errors="replace")


def wait_log(daemon, cid, needle, timeout=30):
    path = status(daemon, cid).log_path
    wait_for(lambda: os.path.exists(path) and needle in log_output(path), timeout=timeout,
             what="%r in the log of %s" % (needle, cid))
    return log_output(path)


def verbose_info(daemon, cid):
    r = daemon.runtime.ContainerStatus(daemon.pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10)
    return json.loads(r.info["info"])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def daemon_healthy(daemon):
    """The daemon still answers and lists."""
    assert daemon.proc.poll() is None, "daemon died:\n" + daemon.log()[-4000:]
    daemon.runtime.Version(daemon.pb.VersionRequest(), timeout=10)
    daemon.runtime.ListContainers(daemon.pb.ListContainersRequest(), timeout=10)


def wait_until(pred, timeout=10, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
