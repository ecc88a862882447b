"""Attacks on the GPU path from inside pods (DESIGN.md security model, rules 1-4), against the real
daemon with the broker's soft TEST DEVICE. The attacker's programs (pod_probe, pod_cuda_thief) run in
containers started through CRI:
  rule 1  a pod reaches the broker only through its own socket: another pod's socket path, the
          daemon's run dir, /proc/<pid>/root of every visible process (with a shared PID namespace
          too), abstract sockets; the broker names the pod from the socket;
  rule 2  another pod's (and another channel's) handles and forged ones are errors;
  rule 3  another pod's device pointer in copies, memsets, frees, and in kernels (read and write);
  rule 4  garbage on the ring and a reconnect loop in one pod: the other pod computes on."""
import os
import socket

import pytest

from attack_common import (PROBE, SOFT_GPU, attacker_image, daemon_healthy, finish, gpu_pod, plain_pod,  # noqa: F401
                           registry, run_container, sh, wait_log, wait_until)
from conftest import daemon, pb  # noqa: F401
from pods_common import cleanup_pods, pull  # noqa: F401

pytestmark = pytest.mark.usefixtures("cleanup_pods")


@pytest.fixture
def daemon_config():
    return SOFT_GPU


@pytest.fixture
def img(daemon, attacker_image):
    pull(daemon, attacker_image)
    return attacker_image


def socket_of(daemon, pod_id):
    return os.path.join(daemon.run_dir, "gpu", pod_id, "vgpu.sock")


def probe_results(out, kind):
    """{target: result} from "KIND target result" lines."""
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == kind:
            res[parts[1]] = parts[2]
    return res


def metrics(daemon):
    r = daemon.runtime.ListPodSandboxMetrics(daemon.pb.ListPodSandboxMetricsRequest(), timeout=10)
    return {pm.pod_sandbox_id: {m.name: m.value.value for m in pm.metrics} for pm in r.pod_metrics}


def test_pod_reaches_only_its_own_broker_socket(daemon, img, tmp_path):
    cfg_a, pod_a = gpu_pod(daemon, "sock-a", str(tmp_path / "a"))
    cfg_b, pod_b = gpu_pod(daemon, "sock-b", str(tmp_path / "b"), share_pid=True)
    cfg_n, pod_n = plain_pod(daemon, "sock-n", str(tmp_path / "n"))
    run_container(daemon, pod_a, cfg_a, img, "a", ["sleep", "600"])
    b = run_container(daemon, pod_b, cfg_b, img, "b", ["sleep", "600"])
    n = run_container(daemon, pod_n, cfg_n, img, "n", ["sleep", "600"])
    sock_a, sock_b = socket_of(daemon, pod_a), socket_of(daemon, pod_b)
    assert os.path.exists(sock_a) and os.path.exists(sock_b)

    # control: from the host, the probe does reach pod A's socket (so ENOENT below means something)
    import subprocess
    out = subprocess.run([PROBE, "connect", sock_a], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert probe_results(out, "CONNECT") == {sock_a: "OK"}, out

    # its own socket: the only thing in /run/vgpu, and the broker names the pod from it
    code, out = sh(daemon, b, "ls -a /run/vgpu")
    assert code == 0 and sorted(out.split()) == [".", "..", "vgpu.sock"], out
    code, out = sh(daemon, b, "pod_probe hello /run/vgpu/vgpu.sock")
    assert code == 0 and "POD_ID " + pod_b[:32] in out, out
    code, out = sh(daemon, n, "pod_probe connect /run/vgpu/vgpu.sock")
    assert probe_results(out, "CONNECT") == {"/run/vgpu/vgpu.sock": "ENOENT"}, out

    # pod A's socket by its host path, the run dir, and through /proc/<pid>/root of every process
    # the container sees (with the pod's shared PID namespace, PID 1 is the pod's infra process)
    targets = [sock_a, sock_b, os.path.join(daemon.run_dir, "gpu", pod_a, "vgpu.sock")]
    script = ("for t in %s; do for p in /proc/[0-9]* /proc/self /proc/thread-self; do "
              "pod_probe connect $p/root$t; done; pod_probe connect $t; done; "
              "ls -d %s /proc/1/root%s 2>&1; ls /proc/1/root/ | head -50" % (
                  " ".join(targets), daemon.run_dir, daemon.run_dir))
    code, out = sh(daemon, b, script)
    res = probe_results(out, "CONNECT")
    assert len(res) >= 3 * 3, out
    reached = {t: r for t, r in res.items() if r not in ("ENOENT", "EACCES")}
    assert not reached, "pod B reached another socket path:\n" + out
    assert "No such file" in out and daemon.run_dir + "\n" not in out.replace("No such file", ""), out
    code, out = sh(daemon, b, "cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/1/root; ls /proc/1/root/")
    # the pod's PID 1 must not show the host's root (the daemon's run dir lives there)
    assert os.path.basename(daemon.workdir) not in out and "vgpu-it-" not in out, out

    # the socket directory is read-only in the container: no swapping the socket for a link
    code, out = sh(daemon, b, "rm -f /run/vgpu/vgpu.sock; ln -s / /run/vgpu/x; touch /run/vgpu/y; ls -a /run/vgpu")
    assert os.path.exists(sock_b) and not os.path.lexists(os.path.join(os.path.dirname(sock_b), "x"))
    assert not os.path.lexists(os.path.join(os.path.dirname(sock_b), "y")), out
    assert "Read-only file system" in out, out

    # the broker's sockets do not exist in the pod's network namespace (/proc/net/unix)
    code, out = sh(daemon, b, "cat /proc/net/unix")
    assert code == 0 and daemon.run_dir not in out and "vgpu.sock" not in out, out
    daemon_healthy(daemon)


def test_abstract_sockets_stay_in_the_host_network_namespace(daemon, img, tmp_path):
    name = "vgpu-sec-abstract-%d" % os.getpid()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(4)
    try:
        import subprocess
        out = subprocess.run([PROBE, "abstract", name], stdout=subprocess.PIPE, text=True, check=True).stdout
        assert probe_results(out, "ABSTRACT") == {name: "OK"}, out  # control: reachable on the host
        cfg, pod = gpu_pod(daemon, "abstract", str(tmp_path))
        c = run_container(daemon, pod, cfg, img, "c", ["sleep", "600"])
        code, out = sh(daemon, c, "pod_probe abstract %s" % name)
        assert probe_results(out, "ABSTRACT") == {name: "ECONNREFUSED"}, out
    finally:
        srv.close()
    # and the daemon itself (broker included) listens on no abstract socket a hostNetwork pod could reach
    inodes = set()
    fd_dir = "/proc/%d/fd" % daemon.proc.pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    with open("/proc/net/unix") as f:
        lines = f.read().splitlines()[1:]
    abstract = [l for l in lines if len(l.split()) >= 8 and l.split()[6] in inodes and l.split()[7].startswith("@")]
    assert not abstract, abstract


def test_foreign_pointers_and_handles_from_another_pod(daemon, img, tmp_path):
    cfg_a, pod_a = gpu_pod(daemon, "owner", str(tmp_path / "a"))
    cfg_b, pod_b = gpu_pod(daemon, "thief", str(tmp_path / "b"))
    owner = run_container(daemon, pod_a, cfg_a, img, "owner", ["pod_probe", "gpu-owner", "/run/vgpu/vgpu.sock", "/tmp/go"])
    out = wait_log(daemon, owner, "OWNER 0x")
    line = [l for l in out.splitlines() if l.startswith("OWNER 0x")][0]
    ptr, hs, he = line.split()[1:4]

    # pod B: raw IDM with pod A's pointer and handles, and forged ones
    t = run_container(daemon, pod_b, cfg_b, img, "thief", ["pod_probe", "gpu-thief", "/run/vgpu/vgpu.sock", ptr, hs, he],
                      wait=False)
    code, out = finish(daemon, t)
    assert code == 0 and "THIEF HELD" in out, out
    # pod B: a CUDA program through the shim, copies and kernels aimed at pod A's memory
    ct = run_container(daemon, pod_b, cfg_b, img, "cuda-thief",
                       ["sh", "-c", "pod_cuda_thief %s read; pod_cuda_thief %s write" % (ptr, ptr)], wait=False)
    code, out = finish(daemon, ct)
    assert "CUDA_THIEF HELD read" in out and "CUDA_THIEF HELD write" in out and "BROKE" not in out, out
    # another channel of pod A itself: handles are per channel, so the same holds
    t2 = run_container(daemon, pod_a, cfg_a, img, "thief2", ["pod_probe", "gpu-thief", "/run/vgpu/vgpu.sock", ptr, hs, he],
                       wait=False)
    code, out = finish(daemon, t2)
    assert code == 0 and "THIEF HELD" in out, out

    # pod A's memory and handles are untouched
    sh(daemon, owner, "touch /tmp/go")
    code, out = finish(daemon, owner)
    assert code == 0 and "OWNER INTACT" in out, out
    m = metrics(daemon)
    assert m[pod_b]["vgpu_gpu_api_errors_total"] >= 50, m[pod_b]
    assert m[pod_a]["vgpu_gpu_memory_used_bytes"] == 0 and m[pod_b]["vgpu_gpu_memory_used_bytes"] == 0, m
    daemon_healthy(daemon)


def test_ring_garbage_and_reconnect_loop_do_not_stop_the_other_pod(daemon, img, tmp_path):
    cfg_a, pod_a = gpu_pod(daemon, "garbage", str(tmp_path / "a"))
    cfg_b, pod_b = gpu_pod(daemon, "victim", str(tmp_path / "b"))
    g = run_container(daemon, pod_a, cfg_a, img, "garbage", ["pod_probe", "gpu-garbage", "/run/vgpu/vgpu.sock", "20"],
                      wait=False)
    v = run_container(daemon, pod_b, cfg_b, img, "victim",
                      ["sh", "-c", "sleep 1; for i in 1 2 3 4 5; do vector_add || exit 1; done"], wait=False)
    code_v, out_v = finish(daemon, v, timeout=120)
    code_g, out_g = finish(daemon, g, timeout=120)
    assert code_v == 0 and out_v.count("vector_add: OK") == 5, out_v
    assert code_g == 0, out_g
    cycles = int(out_g.split("GARBAGE ")[1].split()[0])
    kept = int(out_g.split("kept_open ")[1].split()[0])
    assert cycles >= 20 and kept == 0, out_g  # every garbage channel was closed by the broker
    assert wait_until(lambda: metrics(daemon)[pod_a]["vgpu_gpu_channels"] == 0, timeout=20), metrics(daemon)
    assert metrics(daemon)[pod_a]["vgpu_gpu_memory_used_bytes"] == 0
    # the attacking pod itself is still served afterwards
    c = run_container(daemon, pod_a, cfg_a, img, "after", ["vector_add"], wait=False)
    code, out = finish(daemon, c)
    assert code == 0 and "vector_add: OK" in out, out
    daemon_healthy(daemon)


def test_shared_pid_namespace_pid1_root_is_not_the_host(daemon, img, tmp_path):
    """With a shared PID namespace the pod's infra process is PID 1 of every container. Even a
    container allowed CAP_SYS_PTRACE (which opens /proc/<pid>/root of processes it may trace)
    must not find the host's filesystem there, nor the broker sockets of other pods."""
    from pods_common import container_config, create, start, wait_state
    cfg_a, pod_a = gpu_pod(daemon, "pid-a", str(tmp_path / "a"))
    cfg_b, pod_b = gpu_pod(daemon, "pid-b", str(tmp_path / "b"), share_pid=True)
    cc = container_config(daemon.pb, "tracer", img, command=["sleep", "600"])
    cc.linux.security_context.capabilities.add_capabilities.append("SYS_PTRACE")
    c = create(daemon, pod_b, cfg_b, cc)
    start(daemon, c)
    wait_state(daemon, c, daemon.pb.CONTAINER_RUNNING)
    sock_a = socket_of(daemon, pod_a)
    code, out = sh(daemon, c, "cat /proc/1/cmdline")
    assert "vgpu-pause" in out, out  # PID 1 is the pod's infra process
    code, out = sh(daemon, c, "ls -a /proc/1/root/ 2>&1")
    assert out.split() == [".", ".."] or "Permission denied" in out, "PID 1's root shows the host:\n" + out
    code, out = sh(daemon, c, "pod_probe connect /proc/1/root%s; ls -d /proc/1/root%s 2>&1" % (sock_a, daemon.run_dir))
    assert probe_results(out, "CONNECT") in ({"/proc/1/root" + sock_a: "ENOENT"}, {"/proc/1/root" + sock_a: "EACCES"}), out
    assert "No such file" in out or "Permission denied" in out, out
    daemon_healthy(daemon)
