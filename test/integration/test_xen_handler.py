"""The `xen` runtime handler on a host that is not a Xen control domain (CI, the normal suite): xen
pods are refused with FAILED_PRECONDITION and a message that says why, nothing of them is left in
the state directory, and runc pods work as before. The handler itself on Xen is tested under QEMU
(test/xen/scenarios/pod.sh)."""
import os

import grpc
import pytest

from pods_common import pod_config, run_pod

pytestmark = pytest.mark.skipif(os.path.exists("/proc/xen/capabilities"),
                                reason="this host runs on Xen: see test/xen/scenarios/pod.sh")


@pytest.fixture
def daemon_config():
    # a second xen handler under the name a RuntimeClass would use
    return {"runtime_handlers": {
        "runc": {"type": "runc"},
        "xen": {"type": "xen"},
        "vgpu-xen": {"type": "xen", "guest_memory_mb": 128, "agent_timeout_s": 5},
    }}


def sandbox_dirs(daemon):
    d = os.path.join(daemon.state_dir, "sandboxes")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.mark.parametrize("handler", ["xen", "vgpu-xen"])
def test_xen_pod_refused_without_xen(daemon, handler):
    pb = daemon.pb
    with pytest.raises(grpc.RpcError) as e:
        run_pod(daemon, pod_config(pb, "xp-" + handler), handler=handler)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value
    msg = e.value.details()
    assert "test/xp-" + handler in msg and "'%s'" % handler in msg, msg
    assert "Xen control domain" in msg, msg
    assert list(daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
    assert sandbox_dirs(daemon) == []
    # the same metadata is free again: the refusal reserved nothing
    with pytest.raises(grpc.RpcError) as e2:
        run_pod(daemon, pod_config(pb, "xp-" + handler), handler=handler)
    assert e2.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_runc_pods_work_beside_a_refused_xen_pod(daemon):
    pb = daemon.pb
    with pytest.raises(grpc.RpcError):
        run_pod(daemon, pod_config(pb, "refused"), handler="xen")
    pid = run_pod(daemon, pod_config(pb, "plain"), handler="runc")
    st = daemon.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid, verbose=True))
    assert st.status.state == pb.SANDBOX_READY and st.status.runtime_handler == "runc"
    assert '"xen"' not in st.info["info"]
    items = daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
    assert [p.id for p in items] == [pid]
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid))
    assert sandbox_dirs(daemon) == []
    assert "xen pods disabled" in daemon.log()


def test_status_shows_xen_handler_config(daemon):
    pb = daemon.pb
    st = daemon.runtime.Status(pb.StatusRequest(verbose=True))
    assert "vgpu-xen" in st.info["config"] and "agent_timeout_s" in st.info["config"]
