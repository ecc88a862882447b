"""Pod sandboxes on the runc handler through the CRI: a pod whose infra process holds its network,
IPC and UTS namespaces, two containers sharing IPC (and /dev/shm) and the pod's hostname, Stop and
Remove idempotent, and removal leaving nothing behind (mounts, cgroups, processes, files)."""
import os

import grpc
import pytest

from pods_common import (cleanup_pods, container_config, create, image_ref, info_json, log_text,  # noqa: F401
                         mounts_under, pids_in, pod_config, pod_status, pull, read_cri_log, registry_dir,
                         run_pod, start, status, wait_for)

pytestmark = pytest.mark.usefixtures("cleanup_pods")


@pytest.fixture
def img(daemon, image_ref):  # noqa: F811
    pull(daemon, image_ref)
    return image_ref


def test_pod_two_containers_share_ipc(daemon, img, tmp_path):
    pb = daemon.pb
    cfg = pod_config(pb, "ipc", log_dir=str(tmp_path))
    pod = run_pod(daemon, cfg)
    st = pod_status(daemon, pod, verbose=True)
    assert st.status.state == pb.SANDBOX_READY
    assert st.status.metadata.name == "ipc" and st.status.runtime_handler == "runc"
    infra = info_json(st)["pid"]
    assert os.readlink("/proc/%d/ns/ipc" % infra) != os.readlink("/proc/self/ns/ipc")

    a = create(daemon, pod, cfg, container_config(
        pb, "writer", img, command=["sh", "-c"],
        args=["echo hello-from-a > /dev/shm/x; readlink /proc/self/ns/ipc; hostname; sleep 1000"],
        log_path="writer.log"))
    start(daemon, a)
    b = create(daemon, pod, cfg, container_config(
        pb, "reader", img, command=["sh", "-c"],
        args=["while [ ! -f /dev/shm/x ]; do sleep 0.05; done; cat /dev/shm/x; readlink /proc/self/ns/ipc; "
              "sleep 1000"], log_path="reader.log"))
    start(daemon, b)
    wait_for(lambda: len(log_text(read_cri_log(str(tmp_path / "reader.log")))) >= 2, what="reader output")
    wa = log_text(read_cri_log(str(tmp_path / "writer.log")))
    rb = log_text(read_cri_log(str(tmp_path / "reader.log")))
    assert rb[0] == b"hello-from-a"
    assert wa[0] == rb[1] == os.readlink("/proc/%d/ns/ipc" % infra).encode()
    assert wa[1] == b"ipc"  # the pod's hostname, in the pod's UTS namespace
    assert status(daemon, a).state == pb.CONTAINER_RUNNING

    # Stop kills every container and is idempotent; Remove cleans up everything.
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=30)
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=30)
    assert pod_status(daemon, pod).status.state == pb.SANDBOX_NOTREADY
    for c in (a, b):
        st = status(daemon, c)
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137
    daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=30)
    daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=30)
    assert not daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
    assert not daemon.runtime.ListContainers(pb.ListContainersRequest(), timeout=10).containers
    with pytest.raises(grpc.RpcError) as e:
        pod_status(daemon, pod)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert_nothing_left(daemon, [pod, a, b], infra)


def assert_nothing_left(daemon, ids, infra_pid=None):
    assert not mounts_under(daemon.state_dir), mounts_under(daemon.state_dir)
    assert not mounts_under(daemon.run_dir)
    left = [p for p in pids_in(daemon.workdir) if p[0] != daemon.proc.pid]
    assert not left, left
    if infra_pid:
        assert not os.path.exists("/proc/%d/ns" % infra_pid) or \
            open("/proc/%d/stat" % infra_pid).read().rsplit(")", 1)[1].split()[0] == "Z"
    for i in ids:
        for root, dirs, files in os.walk(daemon.workdir):
            assert not any(i in n for n in dirs + files), (root, i)
        for ctl in ("cpuacct", "memory", "pids", "unified", ""):
            base = os.path.join("/sys/fs/cgroup", ctl, "vgpu-cri")
            if os.path.isdir(base):
                assert not any(i in n for _, dirs, _ in os.walk(base) for n in dirs), (base, i)
