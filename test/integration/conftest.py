"""Shared fixtures for integration tests: an independent CRI client (python3-grpcio with stubs
generated from proto/cri-api.proto at test time) and the real vgpu-cri daemon on a temp socket.

Fixtures:
  pb, grpc_mod      generated message module and grpc
  daemon_config     dict merged into the daemon's config (override per test or module)
  daemon            a started daemon: .runtime / .image stubs, .pb, .socket, .state_dir, .run_dir,
                    .config_path, .restart(), .kill(), .terminate(), .log()
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

SOURCE_DIR = os.environ.get("VGPU_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("VGPU_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
DAEMON_BIN = os.environ.get("VGPU_CRI_BIN", os.path.join(BUILD_DIR, "cri", "vgpu-cri"))

_stub_dir = tempfile.mkdtemp(prefix="vgpu-stubs-")
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(SOURCE_DIR, "proto"),
     "--python_out=" + _stub_dir, "--grpc_python_out=" + _stub_dir, "cri-api.proto"],
    check=True)
sys.path.insert(0, _stub_dir)
import cri_api_pb2 as _pb  # noqa: E402
import cri_api_pb2_grpc as _pb_grpc  # noqa: E402


def merge(base, extra):
    """Deep-merge dict extra into base (returns base)."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


class Daemon:
    def __init__(self, workdir, extra_config, env=None):
        self.workdir = workdir
        self.socket = os.path.join(workdir, "run", "cri.sock")
        self.state_dir = os.path.join(workdir, "state")
        self.run_dir = os.path.join(workdir, "run")
        self.config_path = os.path.join(workdir, "config.yaml")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.pb = _pb
        self.env = env
        cfg = {
            "socket": self.socket,
            "state_dir": self.state_dir,
            "run_dir": self.run_dir,
            "log_level": "debug",
            "cni": {"conf_dir": os.path.join(workdir, "cni")},
            "grpc": {"workers": 4, "fast_workers": 2, "shutdown_timeout_s": 5},
            "runtime_handlers": {
                "runc": {"type": "runc", "runtime_root": os.path.join(workdir, "runc")},
                "xen": {"type": "xen"},
            },
        }
        merge(cfg, extra_config or {})
        self.config = cfg
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)  # JSON is YAML
        self.proc = None
        self.channel = None
        self.start()

    def start(self, timeout=15):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DAEMON_BIN, "--config", self.config_path], stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        # Wait for the socket to accept connections before creating the channel: a gRPC channel
        # that failed once backs off for seconds before it tries again.
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("daemon did not listen within %ss:\n%s" % (timeout, self.log()))
                time.sleep(0.02)
        self.channel = grpc.insecure_channel("unix://" + self.socket)
        self.runtime = _pb_grpc.RuntimeServiceStub(self.channel)
        self.image = _pb_grpc.ImageServiceStub(self.channel)
        self.runtime.Version(_pb.VersionRequest(), timeout=timeout)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def _close_channel(self):
        if self.channel:
            self.channel.close()
            self.channel = None

    def terminate(self, timeout=30):
        """SIGTERM; returns the exit code."""
        self._close_channel()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        self._logf.close()
        return self.proc.returncode

    def kill(self):
        """SIGKILL, as a crash would."""
        self._close_channel()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._logf.close()

    def restart(self):
        """kill -9, then start again on the same state."""
        self.kill()
        self.start()


@pytest.fixture
def pb():
    return _pb


@pytest.fixture
def grpc_mod():
    return grpc


@pytest.fixture
def daemon_config():
    return {}


@pytest.fixture
def daemon(daemon_config):
    workdir = tempfile.mkdtemp(prefix="vgpu-it-", dir="/tmp")
    d = Daemon(workdir, daemon_config)
    yield d
    if d.proc and d.proc.poll() is None:
        rc = d.terminate()
        assert rc == 0, "daemon exit code %s on SIGTERM:\n%s" % (rc, d.log()[-4000:])
    check_sanitizer_clean(d.log())
    if os.environ.get("VGPU_KEEP_TEST_DIRS"):
        print("kept", workdir)
    else:
        remove_tree(workdir)


def check_sanitizer_clean(log):
    """Fail the test when the daemon (an ASan/UBSan build in CI) reported anything."""
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in log, "sanitizer report in daemon log:\n" + log[-6000:]


def remove_tree(path):
    """rm -rf that never descends into something still mounted under path (it unmounts first)."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m == path or m.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(path, ignore_errors=True)
