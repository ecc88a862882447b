"""GPU pods on the runc handler, on the broker's soft TEST DEVICE (CI has no GPU): the daemon gives a
pod that asks for a GPU (vgpu.io/gpu annotations) its own broker socket, and each of its containers
the shim as libcuda.so.1 (also over the image's own libcuda.so.1, here a placeholder that cannot
load), the socket at /run/vgpu and the env for the shim. The image is built here from the CUDA
driver-API test programs of test/gpu (vector_add, mem_quota) and the libraries ldd says they need.
Checked: results, per-pod metrics, a 64 MiB quota, StopPodSandbox freeing the pod's GPU state,
recovery after a daemon restart, non-GPU pods untouched, bad annotations refused."""
import json
import os
import re
import subprocess

import grpc
import pytest

import registry as R
from conftest import BUILD_DIR, SOURCE_DIR, Daemon, check_sanitizer_clean, remove_tree
from pods_common import (APPLETS, cleanup_pods, container_config, create, exec_sync, pod_config, pod_status,  # noqa: F401
                         pull, read_cri_log, log_text, registry_dir, run_pod, start, wait_for, wait_state)

pytestmark = pytest.mark.usefixtures("cleanup_pods")

SHIM = os.path.join(BUILD_DIR, "shim", "libvgpu.so")
PROGRAMS = [os.path.join(BUILD_DIR, "test", "gpu", p) for p in ("vector_add", "mem_quota")]
PTX = os.path.join(SOURCE_DIR, "test", "gpu", "kernels.ptx")
PLACEHOLDER = b"placeholder: not a library; the runtime must replace it with the shim\n"
IMAGE_LIBCUDA = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
MIB = 1 << 20
VECTOR_BYTES = (3 << 20) * 4  # vector_add: 3 Mi floats per vector
# Every container: the kernels for the soft device; sanitizer builds of the programs must not run
# LeakSanitizer (ptrace) inside a container; spin less on small CI machines.
GPU_ENV = {"VGPU_KERNELS_PTX": "/kernels.ptx", "ASAN_OPTIONS": "detect_leaks=0", "VGPU_SPIN_NS": "20000"}


@pytest.fixture
def daemon_config():
    return {"gpu": {"backend": "soft", "shim_path": SHIM}}


def ldd_libs(path):
    """Host paths of the shared libraries path needs (libcuda.so.1 is the shim's job: skipped)."""
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, check=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)(?: => (\S+))? \(0x", line)
        if not m or m.group(1).startswith("libcuda.so") or m.group(1).startswith("linux-vdso"):
            continue
        libs.append(m.group(2) or m.group(1))
    return libs


def gpu_image_layer():
    t = R.Tar()
    made = set()

    def mkdirs(path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                made.add(d)
                t.dir(d, 0o1777 if d == "tmp" else mode)

    for d in ("bin", "etc", "tmp", "opt/lib", "usr/lib/x86_64-linux-gnu"):
        mkdirs(d)
    t.host_file("bin/busybox", R.BUSYBOX, 0o755)
    for app in APPLETS:
        if app != "busybox" and "/" not in app:
            t.symlink("bin/" + app, "busybox")
    t.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    t.file("etc/group", "root:x:0:\n")
    libs = set()
    for prog in PROGRAMS:
        t.host_file("bin/" + os.path.basename(prog), prog, 0o755)
        libs.update(ldd_libs(prog))
    for lib in sorted(libs):
        mkdirs(os.path.dirname(lib))
        t.host_file(lib.lstrip("/"), lib, 0o755)
    t.host_file("kernels.ptx", PTX, 0o644)
    t.file(IMAGE_LIBCUDA.lstrip("/"), PLACEHOLDER, 0o755)
    return t.bytes()


@pytest.fixture(scope="module")
def gpu_image(registry_dir):  # noqa: F811
    reg = R.Registry(registry_dir)
    reg.push_image("test/cuda", "pods", [gpu_image_layer()],
                   config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    yield "%s/test/cuda:pods" % reg.host
    reg.stop()


@pytest.fixture
def img(daemon, gpu_image):
    pull(daemon, gpu_image)
    return gpu_image


def gpu_pod_config(pb, name, log_dir, **annotations):
    cfg = pod_config(pb, name, log_dir=log_dir)
    for k, v in annotations.items():
        cfg.annotations[k] = v
    return cfg


def gpu_annotations(memory=None):
    a = {"vgpu.io/gpu": "true"}
    if memory:
        a["vgpu.io/gpu-memory"] = memory
    return a


def run_container(daemon, pod_id, pod_cfg, img, name, cmd, envs=None):
    """Create and start a container; returns its id."""
    env = dict(GPU_ENV)
    env.update(envs or {})
    cid = create(daemon, pod_id, pod_cfg, container_config(daemon.pb, name, img, command=cmd, log_path=name + ".log",
                                                           envs=env))
    start(daemon, cid)
    return cid


def finish(daemon, cid):
    """Wait for the container's exit: (exit code, stdout+stderr text)."""
    st = wait_state(daemon, cid, daemon.pb.CONTAINER_EXITED, timeout=60)
    return st.exit_code, b"\n".join(log_text(read_cri_log(st.log_path))).decode(errors="replace")


def metrics(daemon):
    """{sandbox id: {metric name: value}} from ListPodSandboxMetrics."""
    r = daemon.runtime.ListPodSandboxMetrics(daemon.pb.ListPodSandboxMetricsRequest(), timeout=10)
    return {pm.pod_sandbox_id: {m.name: m.value.value for m in pm.metrics} for pm in r.pod_metrics}


def socket_path(daemon, pod_id):
    return os.path.join(daemon.run_dir, "gpu", pod_id, "vgpu.sock")


def sh(daemon, cid, script):
    r = exec_sync(daemon, cid, ["sh", "-c", script], timeout=30)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def test_two_gpu_pods_results_metrics_quota_and_stop(daemon, img, tmp_path):
    pb = daemon.pb
    cfg_a = gpu_pod_config(pb, "gpu-a", str(tmp_path / "a"), **gpu_annotations("64Mi"))
    cfg_b = gpu_pod_config(pb, "gpu-b", str(tmp_path / "b"), **gpu_annotations())
    pod_a, pod_b = run_pod(daemon, cfg_a), run_pod(daemon, cfg_b)
    assert os.path.exists(socket_path(daemon, pod_a)) and os.path.exists(socket_path(daemon, pod_b))

    # both pods compute at once, pod b twice as much; results are checked by the program
    va = run_container(daemon, pod_a, cfg_a, img, "va", ["vector_add"])
    vb = run_container(daemon, pod_b, cfg_b, img, "vb", ["sh", "-c", "vector_add && vector_add"])
    (code_a, out_a), (code_b, out_b) = finish(daemon, va), finish(daemon, vb)
    assert code_a == 0 and out_a.count("vector_add: OK") == 1, out_a
    assert code_b == 0 and out_b.count("vector_add: OK") == 2, out_b
    assert "device: " in out_a and "soft" in out_a.lower(), out_a  # the soft TEST DEVICE says so

    # the broker sees a channel close when the exited program's socket hangs up: soon, not at once
    wait_for(lambda: all(metrics(daemon)[p]["vgpu_gpu_channels"] == 0 for p in (pod_a, pod_b)), timeout=30,
             what="both pods' channels closed")
    m = metrics(daemon)
    assert set(m) >= {pod_a, pod_b}, m
    a, b = m[pod_a], m[pod_b]
    assert a["vgpu_gpu_kernel_launches_total"] == 1 and b["vgpu_gpu_kernel_launches_total"] == 2, (a, b)
    # vector_add copies 3 vectors to the device and 2 (+16 bytes) back, per run
    assert a["vgpu_gpu_htod_bytes_total"] == 3 * VECTOR_BYTES, a
    assert a["vgpu_gpu_dtoh_bytes_total"] == 2 * VECTOR_BYTES + 16, a
    assert b["vgpu_gpu_htod_bytes_total"] == 2 * a["vgpu_gpu_htod_bytes_total"], (a, b)
    assert b["vgpu_gpu_dtoh_bytes_total"] == 2 * a["vgpu_gpu_dtoh_bytes_total"], (a, b)
    assert b["vgpu_gpu_api_calls_total"] > a["vgpu_gpu_api_calls_total"] > 0
    assert a["vgpu_gpu_memory_used_bytes"] == 0 and b["vgpu_gpu_memory_used_bytes"] == 0  # all freed
    assert a["vgpu_gpu_memory_peak_bytes"] == 3 * VECTOR_BYTES, a
    assert a["vgpu_gpu_memory_limit_bytes"] == 64 * MIB and b["vgpu_gpu_memory_limit_bytes"] == 0, (a, b)
    assert a["vgpu_gpu_channels"] == 0 and b["vgpu_gpu_channels"] == 0

    # vgpuctl top shows the same per pod (one frame)
    top = subprocess.run([os.path.join(BUILD_DIR, "cri", "vgpuctl"), "--socket", daemon.socket, "top", "--once"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert top.returncode == 0 and "2 GPU pod(s)" in top.stdout, top.stdout
    header = top.stdout.splitlines()[1].split()
    rows = {ln.split()[1]: ln.split() for ln in top.stdout.splitlines()[2:] if ln.strip()}
    assert set(rows) == {"gpu-a", "gpu-b"}, top.stdout
    assert rows["gpu-a"][header.index("LAUNCHES")] == "1" and rows["gpu-b"][header.index("LAUNCHES")] == "2", top.stdout
    assert rows["gpu-a"][header.index("LIMIT")] == "64.0MiB" and rows["gpu-b"][header.index("LIMIT")] == "-", top.stdout

    # the 64 MiB quota: pod a stops at 64 MiB and sees 64 MiB in cuMemGetInfo; pod b goes on
    qa = run_container(daemon, pod_a, cfg_a, img, "qa", ["mem_quota", "256"])
    qb = run_container(daemon, pod_b, cfg_b, img, "qb", ["mem_quota", "256"])
    (code_a, out_a), (code_b, out_b) = finish(daemon, qa), finish(daemon, qb)
    assert code_a == 0 and "mem_quota: OK" in out_a, out_a
    assert "meminfo free=%d total=%d" % (64 * MIB, 64 * MIB) in out_a, out_a
    assert "allocated_mib=64 result=2" in out_a, out_a  # CUDA_ERROR_OUT_OF_MEMORY
    assert code_b == 0 and "allocated_mib=256 result=0" in out_b, out_b
    m = metrics(daemon)
    assert m[pod_a]["vgpu_gpu_memory_peak_bytes"] == 64 * MIB, m[pod_a]
    assert m[pod_b]["vgpu_gpu_memory_peak_bytes"] == 256 * MIB, m[pod_b]
    assert m[pod_a]["vgpu_gpu_api_errors_total"] >= 1  # the refused allocation

    # verbose status shows the GPU quota and usage
    info = json.loads(pod_status(daemon, pod_a, verbose=True).info["gpu"])
    assert info["backend"] == "soft" and info["vgpu_gpu_memory_limit_bytes"] == 64 * MIB, info
    assert info["vgpu_gpu_kernel_launches_total"] == 1, info

    # StopPodSandbox closes the pod's channels and frees what it holds, even mid-use
    hold = run_container(daemon, pod_b, cfg_b, img, "hold", ["mem_quota", "128", "120"])
    wait_for(lambda: metrics(daemon)[pod_b]["vgpu_gpu_memory_used_bytes"] == 128 * MIB, timeout=30,
             what="pod b holding 128 MiB")
    assert metrics(daemon)[pod_b]["vgpu_gpu_channels"] == 1
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_b), timeout=60)
    m = metrics(daemon)
    assert pod_b not in m and pod_a in m, m
    info = json.loads(pod_status(daemon, pod_b, verbose=True).info["gpu"])
    assert info["active"] is False, info
    wait_state(daemon, hold, pb.CONTAINER_EXITED)
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_b), timeout=60)  # idempotent
    daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_b), timeout=60)
    assert not os.path.exists(os.path.dirname(socket_path(daemon, pod_b)))
    assert os.path.exists(socket_path(daemon, pod_a))


def test_injection_and_non_gpu_pod(daemon, img, tmp_path):
    pb = daemon.pb
    cfg_g = gpu_pod_config(pb, "gpu-inj", str(tmp_path / "g"), **gpu_annotations())
    cfg_n = gpu_pod_config(pb, "plain", str(tmp_path / "n"))
    pod_g, pod_n = run_pod(daemon, cfg_g), run_pod(daemon, cfg_n)
    assert not os.path.exists(os.path.join(daemon.run_dir, "gpu", pod_n))
    g = run_container(daemon, pod_g, cfg_g, img, "g", ["sleep", "300"], envs={"LD_LIBRARY_PATH": "/opt/lib"})
    n = run_container(daemon, pod_n, cfg_n, img, "n", ["sleep", "300"], envs={"LD_LIBRARY_PATH": "/opt/lib"})
    wait_state(daemon, g, pb.CONTAINER_RUNNING)
    wait_state(daemon, n, pb.CONTAINER_RUNNING)
    shim_size = os.path.getsize(SHIM)

    # GPU pod: socket, shim at the fixed path and over the image's libcuda, env; no /dev/nvidia*
    code, out = sh(daemon, g, "ls /run/vgpu")
    assert code == 0 and out.split() == ["vgpu.sock"], out
    code, out = sh(daemon, g, "wc -c < /usr/lib/vgpu/libcuda.so.1; wc -c < " + IMAGE_LIBCUDA)
    assert code == 0 and out.split() == [str(shim_size)] * 2, out
    code, out = sh(daemon, g, "env")
    env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    assert env.get("VGPU_SOCKET") == "/run/vgpu/vgpu.sock", out
    assert env.get("LD_LIBRARY_PATH") == "/usr/lib/vgpu:/opt/lib", out
    code, out = sh(daemon, g, "ls /dev")
    assert "nvidia" not in out, out
    code, out = sh(daemon, g, "echo x > /usr/lib/vgpu/libcuda.so.1 || echo read-only")
    assert "read-only" in out, out
    # the image's libcuda path serves even without the loader path: the shim is mounted over it
    code, out = sh(daemon, g, "LD_LIBRARY_PATH= vector_add 2>&1")
    assert code == 0 and "vector_add: OK" in out, out
    assert metrics(daemon)[pod_g]["vgpu_gpu_kernel_launches_total"] == 1

    # non-GPU pod: nothing of the above
    code, out = sh(daemon, n, "ls /run/vgpu")
    assert code != 0, out
    code, out = sh(daemon, n, "ls /usr/lib/vgpu")
    assert code != 0, out
    code, out = sh(daemon, n, "cat " + IMAGE_LIBCUDA)
    assert code == 0 and out.encode() == PLACEHOLDER, out
    code, out = sh(daemon, n, "env")
    assert "VGPU_SOCKET" not in out and "LD_LIBRARY_PATH=/opt/lib" in out.splitlines(), out
    code, out = sh(daemon, n, "vector_add 2>&1")
    assert code != 0, out  # the placeholder cannot load
    assert pod_n not in metrics(daemon)
    assert "gpu" not in pod_status(daemon, pod_n, verbose=True).info


def test_gpu_pod_recovered_after_daemon_restart(daemon, img, tmp_path):
    pb = daemon.pb
    cfg = gpu_pod_config(pb, "gpu-restart", str(tmp_path), **gpu_annotations("512Mi"))
    pod = run_pod(daemon, cfg)
    cid = run_container(daemon, pod, cfg, img, "r", ["sleep", "300"])
    wait_state(daemon, cid, pb.CONTAINER_RUNNING)
    daemon.restart()  # kill -9: the broker, and the pod's channel, die with the daemon
    assert "GPU pod recovered" in daemon.log()
    m = metrics(daemon)
    assert m[pod]["vgpu_gpu_memory_limit_bytes"] == 512 * MIB and m[pod]["vgpu_gpu_kernel_launches_total"] == 0, m
    # the container's bind mount of the socket dir sees the fresh socket
    code, out = sh(daemon, cid, "vector_add 2>&1")
    assert code == 0 and "vector_add: OK" in out, out
    assert metrics(daemon)[pod]["vgpu_gpu_kernel_launches_total"] == 1


@pytest.mark.parametrize("key,value", [
    ("vgpu.io/gpu", "yes"),
    ("vgpu.io/gpu-memory", "lots"),
    ("vgpu.io/gpu-memory", "0"),
    ("vgpu.io/gpu-memory", "-1Gi"),
    ("vgpu.io/gpu-compute", "150"),
    ("vgpu.io/gpu-compute", "0"),
])
def test_bad_annotations_are_invalid_argument(daemon, key, value):
    pb = daemon.pb
    cfg = gpu_pod_config(pb, "bad", "", **{"vgpu.io/gpu": "true", key: value})
    with pytest.raises(grpc.RpcError) as e:
        run_pod(daemon, cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert key in e.value.details() and value in e.value.details(), e.value.details()
    assert not daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
    gpu_dir = os.path.join(daemon.run_dir, "gpu")
    assert not os.path.isdir(gpu_dir) or not os.listdir(gpu_dir)


def test_gpu_pod_refused_without_backend(tmp_path):
    """gpu.backend none: GPU pods fail with a clear error and leave nothing; other pods work."""
    workdir = str(tmp_path / "d")
    os.makedirs(workdir)
    d = Daemon(workdir, {"gpu": {"backend": "none", "shim_path": SHIM}})
    try:
        pb = d.pb
        with pytest.raises(grpc.RpcError) as e:
            run_pod(d, gpu_pod_config(pb, "nogpu", "", **gpu_annotations()))
        assert "vgpu.io/gpu" in e.value.details() and "disabled" in e.value.details(), e.value.details()
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert not d.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
        assert not os.listdir(os.path.join(d.state_dir, "sandboxes"))
        plain = run_pod(d, gpu_pod_config(pb, "plain", ""))
        d.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=plain), timeout=60)
    finally:
        assert d.terminate() == 0
        check_sanitizer_clean(d.log())
        remove_tree(workdir)
