"""Pod networking through the daemon: RunPodSandbox pins the pod's netns and ADDs it with Debian's
real plugins (bridge + host-local + portmap + loopback), PodSandboxStatus reports the IP,
StopPodSandbox DELs (also after a kill -9 restart and a config change) and leaves nothing behind,
a broken plugin config fails RunPodSandbox with the plugin's message. Same test network rules as
test_cni.py: our own bridge on a random 10.88.X.0/24, traffic only between our namespaces and
127.0.0.1."""
import json
import os
import random
import socket

import grpc
import pytest

from test_cni import Net, iptables_save, serve_once, sh  # noqa: F401 (pytestmark below)
from test_cni import pytestmark  # noqa: F401  root + plugins required


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


@pytest.fixture
def daemon_config(net):
    return {"cni": {"conf_dir": net.conf_dir, "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"]}}


@pytest.fixture(autouse=True)
def no_pods_left(daemon):
    """Whatever a test leaves (also when it fails): stopped and removed while the daemon still runs,
    so no infra process, netns, veth or rule outlives the test."""
    yield
    if daemon.proc and daemon.proc.poll() is None and daemon.channel:
        pb = daemon.pb
        for p in daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
            daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60)


def pod_config(pb, name, host_port=None, host_network=False):
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="cni", uid="uid-" + name),
                              hostname=name)
    if host_port:
        cfg.port_mappings.append(pb.PortMapping(protocol=pb.TCP, container_port=8080, host_port=host_port,
                                                host_ip="127.0.0.1"))
    if host_network:
        opts = cfg.linux.security_context.namespace_options
        opts.network = pb.NODE
        opts.pid = pb.CONTAINER  # as kubelet sends it (POD, the enum's zero, would share one)
    return cfg


def run_pod(daemon, cfg):
    pb = daemon.pb
    return daemon.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id


def pod_ip(daemon, pod):
    pb = daemon.pb
    return daemon.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=10).status.network.ip


def stop(daemon, pod):
    daemon.runtime.StopPodSandbox(daemon.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)


def remove(daemon, pod):
    daemon.runtime.RemovePodSandbox(daemon.pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)


def netns_of(daemon, pod):
    return os.path.join(daemon.run_dir, "netns", pod)


def test_pods_get_ips_reach_each_other_and_stop_cleans_up(net, daemon):
    pb = daemon.pb
    host_port = random.randrange(20000, 30000)
    a = run_pod(daemon, pod_config(pb, "a", host_port=host_port))
    b = run_pod(daemon, pod_config(pb, "b"))
    ip_a, ip_b = pod_ip(daemon, a), pod_ip(daemon, b)
    prefix = "10.88.%d." % net.subnet_octet
    assert ip_a.startswith(prefix) and ip_b.startswith(prefix) and ip_a != ip_b
    ns_a, ns_b = netns_of(daemon, a), netns_of(daemon, b)
    net.in_ns(ns_a, "ping", "-c", "1", "-W", "3", ip_b)
    net.in_ns(ns_b, "ping", "-c", "1", "-W", "3", ip_a)
    assert sorted([ip_a, ip_b]) == net.leases()
    # hostPort on 127.0.0.1 reaches a server in pod a.
    server = serve_once(ns_a, 8080)
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as s:
            assert s.recv(100) == b"hello from the pod"
    finally:
        server.wait(timeout=10)
    assert str(host_port) in iptables_save()

    for pod in (a, b):
        stop(daemon, pod)
        assert not os.path.exists(netns_of(daemon, pod))
        net.assert_nothing_left(pod, state_dir=daemon.state_dir, check_bridge=pod == b)
        stop(daemon, pod)  # idempotent
        remove(daemon, pod)
    assert net.leases() == []
    assert str(host_port) not in iptables_save()
    assert os.listdir(os.path.join(daemon.run_dir, "netns")) == []


def test_stop_after_restart_and_config_change(net, daemon):
    pb = daemon.pb
    pod = run_pod(daemon, pod_config(pb, "r", host_port=random.randrange(30000, 40000)))
    ip = pod_ip(daemon, pod)
    daemon.restart()  # kill -9 and start again
    assert pod_ip(daemon, pod) == ip
    net.write_config([{"type": "nosuchplugin"}], file="00-other.conflist", name="other")
    stop(daemon, pod)
    net.assert_nothing_left(pod, state_dir=daemon.state_dir)
    assert net.leases() == []
    assert not os.path.exists(netns_of(daemon, pod))
    remove(daemon, pod)


def test_broken_plugin_config_fails_run_pod_sandbox(net, daemon):
    pb = daemon.pb
    net.write_config(net.plugins(portmap={"type": "portmap", "capabilities": {"portMappings": True},
                                          "conditionsV4": "not-a-list"}))
    with pytest.raises(grpc.RpcError) as e:
        run_pod(daemon, pod_config(pb, "broken", host_port=random.randrange(40000, 50000)))
    assert "plugin portmap ADD failed" in e.value.details(), e.value.details()
    assert list(daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == []
    assert net.leases() == []
    assert "veth" not in sh("ip", "-o", "link", "show", "master", net.bridge, check=False).stdout
    netns_dir = os.path.join(daemon.run_dir, "netns")
    assert not os.path.isdir(netns_dir) or os.listdir(netns_dir) == []
    cache_dir = os.path.join(daemon.state_dir, "cni")
    assert not os.path.isdir(cache_dir) or os.listdir(cache_dir) == []
    assert "vgpu-it-" + net.tag not in iptables_save()


def test_host_network_pod_skips_cni(net, daemon):
    pb = daemon.pb
    pod = run_pod(daemon, pod_config(pb, "hostnet", host_network=True))
    assert pod_ip(daemon, pod) == ""
    assert net.leases() == []
    assert not os.path.exists(netns_of(daemon, pod))
    stop(daemon, pod)
    remove(daemon, pod)
