"""The daemon as a CRI server: Version, Status, RuntimeConfig, UpdateRuntimeConfig, unimplemented
and unknown methods, garbage on the socket, shutdown, single instance, bad config."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

from conftest import DAEMON_BIN


def raw_call(daemon, method, payload):
    call = daemon.channel.unary_unary(method, request_serializer=lambda x: x, response_deserializer=lambda x: x)
    return call(payload, timeout=10)


def test_version(daemon, pb):
    v = daemon.runtime.Version(pb.VersionRequest(version="v1"))
    assert v.runtime_name == "vgpu-cri"
    assert v.runtime_api_version == "v1"
    assert v.runtime_version and v.runtime_version[0].isdigit()
    out = subprocess.run([DAEMON_BIN, "--version"], capture_output=True, text=True, check=True).stdout
    assert v.runtime_version in out


def test_status_conditions(daemon, pb):
    st = daemon.runtime.Status(pb.StatusRequest())
    conds = {c.type: c for c in st.status.conditions}
    assert conds["RuntimeReady"].status is True
    # the test config points CNI at an empty dir: network not ready, with a reason and message
    assert conds["NetworkReady"].status is False
    assert conds["NetworkReady"].reason == "NetworkPluginNotReady"
    assert "cni" in conds["NetworkReady"].message
    assert not st.info, "info only with verbose"
    assert sorted(h.name for h in st.runtime_handlers) == ["runc", "xen"]


def test_status_network_ready_with_cni_config(daemon, pb):
    os.makedirs(daemon.config["cni"]["conf_dir"], exist_ok=True)
    with open(os.path.join(daemon.config["cni"]["conf_dir"], "10-test.conflist"), "w") as f:
        f.write('{"cniVersion": "1.0.0", "name": "t", "plugins": [{"type": "loopback"}]}')
    conds = {c.type: c for c in daemon.runtime.Status(pb.StatusRequest()).status.conditions}
    assert conds["NetworkReady"].status is True


def test_status_verbose_has_config_json(daemon, pb):
    st = daemon.runtime.Status(pb.StatusRequest(verbose=True))
    for key, value in st.info.items():
        json.loads(value)  # crictl info fails on any value that is not JSON
    cfg = json.loads(st.info["config"])
    assert cfg["socket"] == daemon.socket
    assert cfg["state_dir"] == daemon.state_dir
    assert cfg["grpc"]["workers"] == 4
    assert "runc" in cfg["runtime_handlers"]


def test_runtime_config_cgroup_driver(daemon, pb):
    r = daemon.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert r.linux.cgroup_driver == pb.CGROUPFS


@pytest.mark.parametrize("daemon_config", [{"cgroup_driver": "systemd"}])
def test_runtime_config_systemd(daemon, pb):
    assert daemon.runtime.RuntimeConfig(pb.RuntimeConfigRequest()).linux.cgroup_driver == pb.SYSTEMD


def test_update_runtime_config_records_pod_cidr(daemon, pb):
    req = pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.88.0.0/16,fd00::/64")))
    daemon.runtime.UpdateRuntimeConfig(req)
    st = daemon.runtime.Status(pb.StatusRequest(verbose=True))
    # every info value is JSON, as crictl info expects
    assert json.loads(st.info["podCIDR"]) == "10.88.0.0/16,fd00::/64"
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.0.0.0/8; rm -rf /"))))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unimplemented_names_the_rpc(daemon, pb):
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime.CheckpointContainer(pb.CheckpointContainerRequest(container_id="x"))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in e.value.details()


def test_unknown_method(daemon):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/runtime.v1.RuntimeService/NoSuchCall", b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchCall" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/other.Service/Version", b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff",                 # invalid tag
    b"\x0a\x05ab",                   # field 1 says 5 bytes, 2 follow (truncated)
    b"\x0a",                         # a tag with no length
    b"\x08" + b"\xff" * 11,          # varint longer than 10 bytes
])
def test_malformed_request_bytes(daemon, pb, payload):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/runtime.v1.RuntimeService/Status", payload)
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    assert daemon.runtime.Version(pb.VersionRequest()).runtime_name == "vgpu-cri"


def test_malformed_request_to_every_rpc(daemon, pb):
    """A truncated protobuf sent to every registered RPC: an error status each time, never a crash."""
    for svc in (pb.DESCRIPTOR.services_by_name["RuntimeService"], pb.DESCRIPTOR.services_by_name["ImageService"]):
        for m in svc.methods:
            path = "/runtime.v1.%s/%s" % (svc.name, m.name)
            if m.name.startswith("Stream") or m.name == "GetContainerEvents":
                call = daemon.channel.unary_stream(path, request_serializer=lambda x: x,
                                                   response_deserializer=lambda x: x)
                with pytest.raises(grpc.RpcError):
                    list(call(b"\x0a\x05ab", timeout=10))
            else:
                with pytest.raises(grpc.RpcError) as e:
                    raw_call(daemon, path, b"\x0a\x05ab")
                assert e.value.code() != grpc.StatusCode.OK, path
    assert daemon.proc.poll() is None
    assert daemon.runtime.Version(pb.VersionRequest()).runtime_name == "vgpu-cri"


def test_garbage_bytes_on_socket(daemon, pb):
    for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096),
                 b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(daemon.socket)
        try:
            s.sendall(junk)
            s.recv(4096)  # the server answers with a GOAWAY or closes
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        s.close()
    assert daemon.proc.poll() is None
    assert daemon.runtime.Version(pb.VersionRequest()).runtime_name == "vgpu-cri"


def test_concurrent_calls(daemon, pb):
    errors = []

    def worker():
        try:
            for _ in range(50):
                daemon.runtime.Status(pb.StatusRequest(verbose=True))
                daemon.runtime.Version(pb.VersionRequest())
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_sigterm_clean_shutdown(daemon):
    assert daemon.terminate() == 0
    assert not os.path.exists(daemon.socket)
    assert "vgpu-cri stopped" in daemon.log()


def test_sigint_clean_shutdown(daemon):
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=30) == 0


def test_second_instance_refused(daemon, pb):
    r = subprocess.run([DAEMON_BIN, "--config", daemon.config_path], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "already serving" in r.stderr
    # the first one is untouched
    assert daemon.runtime.Version(pb.VersionRequest()).runtime_name == "vgpu-cri"


def test_stale_socket_after_crash(daemon, pb):
    daemon.kill()
    assert os.path.exists(daemon.socket)  # left behind by the crash
    daemon.start()
    assert daemon.runtime.Version(pb.VersionRequest()).runtime_name == "vgpu-cri"


def test_bad_config_names_file_line_column_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("log_level: info\ngrpc:\n  workers: lots\n")
    r = subprocess.run([DAEMON_BIN, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "%s:3:12:" % cfg in r.stderr
    assert "grpc.workers" in r.stderr
    cfg.write_text("sockett: /tmp/x.sock\n")
    r = subprocess.run([DAEMON_BIN, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "%s:1:1:" % cfg in r.stderr and "sockett" in r.stderr
    r = subprocess.run([DAEMON_BIN, "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode != 0 and "missing.yaml" in r.stderr


def test_print_default_config_is_loadable(tmp_path):
    out = subprocess.run([DAEMON_BIN, "--print-default-config"], capture_output=True, text=True, check=True).stdout
    assert "socket: /run/vgpu-cri/vgpu-cri.sock" in out
    cfg = tmp_path / "default.yaml"
    cfg.write_text(out)
    r = subprocess.run([DAEMON_BIN, "--config", str(cfg), "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_shipped_config_is_the_default_config():
    """deploy/config.yaml must stay what --print-default-config prints (apart from its header)."""
    from conftest import SOURCE_DIR
    printed = subprocess.run([DAEMON_BIN, "--print-default-config"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    with open(os.path.join(SOURCE_DIR, "deploy", "config.yaml")) as f:
        shipped = f.read().splitlines()[2:]
    assert printed == shipped, "regenerate deploy/config.yaml with vgpu-cri --print-default-config"


class StallingServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a registry that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("daemon_config", [{"grpc": {"workers": 2, "fast_workers": 1, "shutdown_timeout_s": 2}}])
def test_slow_handlers_never_block_version_and_shutdown_is_bounded(daemon, pb):
    """Every slow worker stuck in a pull from a registry that never answers: Version, Status and
    the lists still answer at once; SIGTERM still ends the daemon within the configured bound."""
    srv = StallingServer()
    try:
        futures = [daemon.image.PullImage.future(pb.PullImageRequest(
            image=pb.ImageSpec(image="127.0.0.1:%d/stall/img%d:latest" % (srv.port, i))), timeout=60)
            for i in range(4)]
        deadline = time.time() + 10
        while len(srv.conns) < 2 and time.time() < deadline:  # both slow workers are inside a pull
            time.sleep(0.05)
        assert len(srv.conns) >= 2, "the pulls never reached the stalling registry"
        for _ in range(20):
            t0 = time.time()
            daemon.runtime.Version(pb.VersionRequest(), timeout=5)
            daemon.runtime.Status(pb.StatusRequest(), timeout=5)
            assert time.time() - t0 < 1.0
        t0 = time.time()
        daemon.proc.send_signal(signal.SIGTERM)
        rc = daemon.proc.wait(timeout=30)
        elapsed = time.time() - t0
        assert rc == 0, daemon.log()[-3000:]
        assert elapsed < 2 + 2 + 3, "shutdown took %.1fs" % elapsed  # bound + cancel grace + slack
        for f in futures:
            with pytest.raises(grpc.RpcError):
                f.result()
    finally:
        srv.close()
