"""Helpers for the pod and container integration tests (test_pod*.py, test_container*.py): a
busybox image with every applet in the local registry (registry.py), pod and container configs,
and bounded waits. Not a test module itself."""
import json
import os
import subprocess
import tempfile
import time

import pytest

import registry as R
from conftest import remove_tree

APPLETS = subprocess.run([R.BUSYBOX, "--list"], stdout=subprocess.PIPE, check=True,
                         text=True).stdout.split()


def busybox_full_layer():
    t = R.Tar().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700).dir("home").dir("home/app")
    t.host_file("bin/busybox", R.BUSYBOX, 0o755)
    for app in APPLETS:
        if app not in ("busybox",) and "/" not in app:
            t.symlink("bin/" + app, "busybox")
    t.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                         "app:x:1000:1000:app:/home/app:/bin/sh\n"
                         "nobody:x:65534:65534:nobody:/:/bin/false\n")
    t.file("etc/group", "root:x:0:\napp:x:1000:\nvideo:x:44:app\nnogroup:x:65534:\n")
    return t.bytes()


@pytest.fixture(scope="module")
def registry_dir():
    d = tempfile.mkdtemp(prefix="vgpu-pod-reg-", dir="/tmp")
    yield d
    remove_tree(d)


@pytest.fixture(scope="module")
def image_ref(registry_dir):
    reg = R.Registry(registry_dir)
    reg.push_image("test/busybox", "pods", [busybox_full_layer()],
                   config={"Cmd": ["sh"], "Env": ["PATH=/bin", "FROM_IMAGE=yes"], "WorkingDir": "/"})
    yield "%s/test/busybox:pods" % reg.host
    reg.stop()


def pull(daemon, ref):
    pb = daemon.pb
    return daemon.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=60).image_ref


def pod_config(pb, name, log_dir=None, uid=None, attempt=0, labels=None, share_pid=False, sysctls=None,
               dns=None, hostname=None):
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="test", uid=uid or ("uid-" + name), attempt=attempt),
        hostname=hostname or name,
        log_directory=log_dir or "",
        labels=labels or {},
        annotations={"note": "pod " + name},
    )
    if share_pid:
        cfg.linux.security_context.namespace_options.pid = pb.POD
    for k, v in (sysctls or {}).items():
        cfg.linux.sysctls[k] = v
    if dns:
        cfg.dns_config.CopyFrom(dns)
    return cfg


def run_pod(daemon, cfg, handler="", timeout=30):
    pb = daemon.pb
    return daemon.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                        timeout=timeout).pod_sandbox_id


def container_config(pb, name, image, command=None, args=None, log_path=None, labels=None, envs=None,
                     attempt=0, mounts=None, resources=None):
    cfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image),
        command=command or [],
        args=args or [],
        log_path=log_path or "",
        labels=labels or {},
        annotations={"note": "container " + name},
        envs=[pb.KeyValue(key=k, value=v.encode()) for k, v in (envs or {}).items()],
        mounts=mounts or [],
    )
    if resources:
        cfg.linux.resources.CopyFrom(resources)
    return cfg


def create(daemon, pod_id, pod_cfg, cfg, timeout=30):
    pb = daemon.pb
    return daemon.runtime.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=pod_cfg),
        timeout=timeout).container_id


def start(daemon, cid, timeout=30):
    daemon.runtime.StartContainer(daemon.pb.StartContainerRequest(container_id=cid), timeout=timeout)


def status(daemon, cid, verbose=False):
    pb = daemon.pb
    return daemon.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=verbose),
                                          timeout=10).status


def pod_status(daemon, pid, verbose=False):
    pb = daemon.pb
    return daemon.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid, verbose=verbose),
                                           timeout=10)


def wait_state(daemon, cid, state, timeout=15):
    deadline = time.time() + timeout
    while True:
        st = status(daemon, cid)
        if st.state == state:
            return st
        if time.time() > deadline:
            raise AssertionError("container %s in state %s, not %s after %ss" % (cid, st.state, state, timeout))
        time.sleep(0.05)


def wait_for(pred, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def exec_sync(daemon, cid, cmd, timeout=10):
    pb = daemon.pb
    return daemon.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                                   timeout=timeout + 20)


def read_cri_log(path):
    """[(stream, tag, content)] of a CRI log file, checking each record's timestamp."""
    out = []
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if not line:
                continue
            ts, stream, tag, content = line.split(b" ", 3)
            assert ts.endswith(b"Z") and len(ts) == len("2006-01-02T15:04:05.000000000Z"), ts
            assert stream in (b"stdout", b"stderr") and tag in (b"P", b"F"), line[:80]
            out.append((stream.decode(), tag.decode(), content))
    return out


def log_text(records, stream=None):
    """Reassemble full lines from CRI log records."""
    lines, cur = [], b""
    for s, tag, content in records:
        if stream and s != stream:
            continue
        cur += content
        if tag == "F":
            lines.append(cur)
            cur = b""
    if cur:
        lines.append(cur)
    return lines


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(path)]


def pids_in(path):
    """Processes whose command line mentions path (our monitors, infra, runc)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path.encode() in cmd and state != "Z":
            found.append((int(p), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def info_json(resp):
    return json.loads(resp.info["info"])


@pytest.fixture
def cleanup_pods(daemon):
    """Remove every pod and container the test left, so that no container outlives its test
    (the daemon's SIGTERM leaves pods running, as it must)."""
    yield
    if daemon.proc is None or daemon.proc.poll() is not None or daemon.channel is None:
        return
    pb = daemon.pb
    for c in daemon.runtime.ListContainers(pb.ListContainersRequest(), timeout=30).containers:
        daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=60)
    for p in daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
        daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60)
