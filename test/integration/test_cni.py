"""CNI with Debian's real plugins (bridge + host-local + portmap + loopback from
containernetworking-plugins), driven through the module's command-line driver cni_tool (built with the
unit tests), each call a fresh process as after a daemon restart.

Only test addresses: a bridge of our own (vcni<tag>) on a random 10.88.X.0/24 used by the namespaces
made here; traffic goes only between those namespaces and 127.0.0.1. Needs root; everything made is
removed at the end (bridge, namespaces, iptables chains portmap added if there were none before,
ip_forward restored)."""
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

SOURCE_DIR = os.environ.get("VGPU_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("VGPU_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
TOOL = os.path.join(BUILD_DIR, "test", "unit", "cni_tool")
PLUGIN_DIR = "/usr/lib/cni"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, iptables)"),
    pytest.mark.skipif(not os.path.exists(os.path.join(PLUGIN_DIR, "bridge")),
                       reason="containernetworking-plugins not installed"),
]


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def iptables_save():
    return sh("iptables-save").stdout


class Net:
    def __init__(self):
        if not os.path.exists(TOOL):
            pytest.fail("%s not built (make cni_tool)" % TOOL)
        self.tag = "%06x" % random.randrange(1 << 24)
        self.dir = tempfile.mkdtemp(prefix="vgpu-cni-it-", dir="/tmp")
        self.conf_dir = os.path.join(self.dir, "conf")
        self.state_dir = os.path.join(self.dir, "state")
        self.ipam_dir = os.path.join(self.dir, "ipam")
        os.makedirs(self.conf_dir)
        self.bridge = "vcni" + self.tag
        self.name = "vgpu-it-" + self.tag
        self.subnet_octet = random.randrange(100, 250)
        self.subnet = "10.88.%d.0/24" % self.subnet_octet
        self.namespaces = []
        self.added = []
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            self.ip_forward = f.read().strip()
        self.had_hostport_chains = ":CNI-HOSTPORT-DNAT" in iptables_save()
        self.write_config(self.plugins())

    def plugins(self, portmap=None):
        return [
            {"type": "loopback"},
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "dataDir": self.ipam_dir}},
            portmap or {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ]

    def write_config(self, plugins, file="10-test.conflist", name=None):
        for f in os.listdir(self.conf_dir):
            os.unlink(os.path.join(self.conf_dir, f))
        with open(os.path.join(self.conf_dir, file), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": name or self.name, "plugins": plugins}, f)

    def tool(self, *args, check=True):
        p = subprocess.run([TOOL, "--conf-dir", self.conf_dir, "--bin-dir", "/opt/cni/bin", "--bin-dir", PLUGIN_DIR,
                            "--state-dir", self.state_dir] + list(args), capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("cni_tool %s: rc %d\n%s" % (" ".join(args), p.returncode, p.stderr))
        return p

    def netns(self, short):
        path = os.path.join(self.dir, "netns", short)
        self.tool("netns-create", path)
        self.namespaces.append(path)
        return path

    def add(self, pod_id, netns, *extra):
        self.added.append((pod_id, netns))
        return json.loads(self.tool("add", pod_id, netns, *extra).stdout)

    def in_ns(self, netns, *cmd, check=True):
        return sh("nsenter", "--net=" + netns, *cmd, check=check)

    def leases(self):
        d = os.path.join(self.ipam_dir, self.name)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f not in ("lock",) and not f.startswith("last_reserved_ip"))

    def assert_nothing_left(self, pod_id, result=None, state_dir=None, check_bridge=True):
        """No veth (of result; with check_bridge none on the bridge at all), no iptables rule, no lease,
        no cache entry of pod_id."""
        rules = iptables_save()
        assert pod_id not in rules, "iptables rules left for %s:\n%s" % (
            pod_id, "\n".join(l for l in rules.splitlines() if pod_id in l))
        if check_bridge:
            veths = sh("ip", "-o", "link", "show", "master", self.bridge, check=False).stdout
            assert "veth" not in veths, "veths left on %s: %s" % (self.bridge, veths)
        for iface in (result or {}).get("interfaces", []):
            if not iface["sandbox"] and iface["name"] != self.bridge:
                assert sh("ip", "link", "show", iface["name"], check=False).returncode != 0, iface["name"]
        for ip in (result or {}).get("ips", []):
            assert ip.split("/")[0] not in self.leases()
        assert not os.path.exists(os.path.join(state_dir or self.state_dir, "cni", pod_id + ".json"))

    def cleanup(self):
        for pod_id, netns in self.added:
            self.tool("del", pod_id, netns, check=False)
        for path in self.namespaces:
            self.tool("netns-remove", path, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(self.ip_forward)
        if not self.had_hostport_chains:
            remove_portmap_chains()
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_portmap_chains():
    """Remove portmap's shared chains when no pod uses them any more (we made them)."""
    nat = sh("iptables-save", "-t", "nat").stdout
    if "CNI-DN-" in nat:
        return
    sh("iptables", "-t", "nat", "-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j",
       "CNI-HOSTPORT-DNAT", check=False)
    sh("iptables", "-t", "nat", "-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j",
       "CNI-HOSTPORT-DNAT", check=False)
    sh("iptables", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment",
       "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ", check=False)
    for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"):
        sh("iptables", "-t", "nat", "-F", chain, check=False)
        sh("iptables", "-t", "nat", "-X", chain, check=False)


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


def pod_id(net, short):
    return "it-%s-%s" % (short, net.tag)


def test_two_pods_get_addresses_and_ping_each_other(net):
    ns_a, ns_b = net.netns("a"), net.netns("b")
    id_a, id_b = pod_id(net, "a"), pod_id(net, "b")
    ra, rb = net.add(id_a, ns_a), net.add(id_b, ns_b)
    prefix = "10.88.%d." % net.subnet_octet
    assert ra["ip"].startswith(prefix) and rb["ip"].startswith(prefix) and ra["ip"] != rb["ip"]
    assert ra["network"] == net.name and ra["cniVersion"] == "1.0.0"
    assert any(i["name"] == "eth0" and i["sandbox"] == ns_a for i in ra["interfaces"])
    assert ra["ip"] + "/24" in net.in_ns(ns_a, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert net.in_ns(ns_a, "ip", "-o", "link", "show", "lo").stdout.find("UP") > 0
    net.in_ns(ns_a, "ping", "-c", "1", "-W", "3", rb["ip"])
    net.in_ns(ns_b, "ping", "-c", "1", "-W", "3", ra["ip"])
    assert sorted([ra["ip"], rb["ip"]]) == net.leases()
    # The cached result is what ADD returned (PodSandboxStatus after a restart).
    assert json.loads(net.tool("cached", id_a).stdout)["ip"] == ra["ip"]

    net.tool("del", id_a, ns_a)
    net.tool("del", id_b, ns_b)
    net.assert_nothing_left(id_a, ra)
    net.assert_nothing_left(id_b, rb)
    assert net.leases() == []
    # DEL again: idempotent.
    net.tool("del", id_a, ns_a)
    for ns in (ns_a, ns_b):
        net.tool("netns-remove", ns)
        assert not os.path.exists(ns)
        assert net.tool("netns-exists", ns, check=False).returncode == 1
    net.tool("netns-remove", ns_a)  # idempotent too


def serve_once(netns, port):
    """A one-connection TCP server in netns answering "hello from the pod"."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',%d)); s.listen(1); print('listening',flush=True)\n"
            "s.settimeout(20); c,a=s.accept(); c.sendall(b'hello from the pod'); c.close()\n" % port)
    p = subprocess.Popen(["nsenter", "--net=" + netns, "/usr/bin/python3", "-c", code], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "listening"
    return p


def test_host_port_on_localhost_reaches_the_pod(net):
    ns = net.netns("web")
    pid = pod_id(net, "web")
    host_port = random.randrange(20000, 30000)
    r = net.add(pid, ns, "--port", "127.0.0.1:%d:8080/TCP" % host_port)
    nat = iptables_save()
    dnat = [l for l in nat.splitlines() if "DNAT" in l and "%s:8080" % r["ip"] in l]
    assert dnat and any(str(host_port) in l for l in dnat), nat
    assert any(pid in l and str(host_port) in l for l in nat.splitlines() if "CNI-HOSTPORT-DNAT" in l)
    server = serve_once(ns, 8080)
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as s:
            assert s.recv(100) == b"hello from the pod"
    finally:
        server.wait(timeout=10)
    net.tool("del", pid, ns)
    net.assert_nothing_left(pid, r)
    assert str(host_port) not in iptables_save()


def test_del_works_after_config_change_and_restart(net):
    ns = net.netns("c")
    pid = pod_id(net, "c")
    r = net.add(pid, ns, "--port", "127.0.0.1:%d:80/tcp" % random.randrange(30000, 40000))
    # The config changes under the pod (a broken one, another network name); every cni_tool call
    # is a new process, so DEL can rely only on what ADD saved.
    net.write_config([{"type": "nosuchplugin"}], file="00-other.conflist", name="other")
    assert net.tool("ready", check=False).returncode == 1
    net.tool("del", pid, ns)
    net.assert_nothing_left(pid, r)
    assert net.leases() == []


def test_broken_plugin_config_gives_clear_error_and_leaves_nothing(net):
    ns = net.netns("broken")
    pid = pod_id(net, "broken")
    # bridge succeeds first, then portmap fails on its config: the bridge's veth and lease must go.
    net.write_config(net.plugins(portmap={"type": "portmap", "capabilities": {"portMappings": True},
                                          "conditionsV4": "not-a-list"}))
    p = net.tool("add", pid, ns, "--port", "127.0.0.1:%d:80/tcp" % random.randrange(40000, 50000), check=False)
    assert p.returncode == 1
    assert "CNI network %s: plugin portmap ADD failed:" % net.name in p.stderr, p.stderr
    assert "cannot unmarshal" in p.stderr or "failed to parse" in p.stderr, p.stderr
    net.assert_nothing_left(pid)
    assert net.leases() == []
    assert net.in_ns(ns, "ip", "link", "show", "eth0", check=False).returncode != 0

    # A bad subnet: host-local's own message comes through.
    plugins = net.plugins()
    plugins[1]["ipam"]["ranges"] = [[{"subnet": "10.88.300.0/24"}]]
    net.write_config(plugins)
    p = net.tool("add", pid, ns, check=False)
    assert p.returncode == 1 and "plugin bridge ADD failed:" in p.stderr and "10.88.300.0/24" in p.stderr, p.stderr
    net.assert_nothing_left(pid)

    # A missing plugin: not ready, and ADD refuses without running anything.
    net.write_config([{"type": "loopback"}, {"type": "nosuchplugin"}])
    p = net.tool("ready", check=False)
    assert p.returncode == 1 and "plugin 'nosuchplugin' not found in /opt/cni/bin:/usr/lib/cni" in p.stdout, p.stdout
    p = net.tool("add", pid, ns, check=False)
    assert p.returncode == 1 and "nosuchplugin" in p.stderr
    net.assert_nothing_left(pid)
