"""Resource attacks from inside a pod (DESIGN.md rule 4: a pod's misbehaviour ends only its own
state; the daemon and other pods go on):
  - a huge log line flood (one 96 MiB line, then a flood of short lines): the monitor's and the
    daemon's memory stay bounded (RSS sampled while it runs), the log is complete;
  - ExecSync of commands that never exit (sleep, a shell with background children, endless
    output): DEADLINE_EXCEEDED on time, nothing of the exec left running;
  - a fork bomb: the handler's pids_limit holds, the daemon answers during it and afterwards."""
import os
import threading
import time

import grpc
import pytest

from attack_common import (MIB, attacker_image, daemon_healthy, finish, plain_pod, registry, rss_kib,  # noqa: F401
                           run_container, sh, verbose_info, wait_until)
from conftest import daemon, pb  # noqa: F401
from pods_common import cleanup_pods, exec_sync, pids_in, pull, wait_state  # noqa: F401

pytestmark = pytest.mark.usefixtures("cleanup_pods")

PIDS_LIMIT = 64


@pytest.fixture
def daemon_config():
    return {"runtime_handlers": {"runc": {"pids_limit": PIDS_LIMIT}}}


@pytest.fixture
def img(daemon, attacker_image):
    pull(daemon, attacker_image)
    return attacker_image


class RssSampler:
    """Peak RSS (KiB) of some pids, sampled every 50 ms in a thread."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {p: rss_kib(p) for p in pids}
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kib(p))
            time.sleep(0.05)

    def finish(self):
        self.stop = True
        self.t.join()
        return self.peak


def log_summary(path):
    """(records, content bytes, last record's tag and content) of a CRI log, streamed."""
    n, size, last = 0, 0, None
    with open(path, "rb") as f:
        for line in f:
            ts, stream, tag, content = line.rstrip(b"\n").split(b" ", 3)
            n += 1
            size += len(content)
            last = (tag, content[:64])
    return n, size, last


def test_log_flood_memory_bounded(daemon, img, tmp_path):
    cfg, pod = plain_pod(daemon, "flood", str(tmp_path / "logs"))
    line_bytes = 96 * MIB
    daemon_rss0 = rss_kib(daemon.proc.pid)
    c = run_container(daemon, pod, cfg, img, "flood",
                      ["sh", "-c", "sleep 0.5; pod_probe flood %d; yes 0123456789abcdef | head -c 33554432; "
                                   "echo; echo END" % line_bytes], wait=False)
    info = verbose_info(daemon, c)
    monitor = info["monitorPid"]
    sampler = RssSampler([monitor, daemon.proc.pid])
    code = wait_state(daemon, c, daemon.pb.CONTAINER_EXITED, timeout=300).exit_code
    peak = sampler.finish()
    assert code == 0
    log_path = os.path.join(str(tmp_path / "logs"), "flood.log")
    n, size, last = log_summary(log_path)
    # the long line in 16 KiB records, 32 MiB of short lines, and the end marker: nothing lost
    assert size >= line_bytes + 32 * MIB - 2 * MIB, (n, size)
    assert last == (b"F", b"END"), last
    print("log flood: %d records, %d bytes; peak RSS monitor %d KiB, daemon %d -> %d KiB"
          % (n, size, peak[monitor], daemon_rss0, peak[daemon.proc.pid]))
    assert peak[monitor] < 32 * 1024, "monitor RSS peaked at %d KiB during the flood" % peak[monitor]
    assert peak[daemon.proc.pid] - daemon_rss0 < 32 * 1024, \
        "daemon RSS grew from %d to %d KiB during the flood" % (daemon_rss0, peak[daemon.proc.pid])
    daemon_healthy(daemon)


def exec_left(daemon, cid, marker):
    """Processes of the container whose command line has marker (busybox ps), besides ps itself."""
    code, out = sh(daemon, cid, "ps -o pid,args")
    return [l for l in out.splitlines() if marker in l and "ps -o" not in l]


@pytest.mark.parametrize("cmd,marker", [
    (["sleep", "86399"], "86399"),
    (["sh", "-c", "sleep 86398 & sleep 86397 & wait"], "8639"),
    (["sh", "-c", "trap '' TERM INT HUP; while :; do :; done"], "while"),
    (["yes", "an endless stream of output"], "yes"),
], ids=["sleep", "background-children", "busy-loop-ignoring-signals", "endless-output"])
def test_exec_sync_that_never_exits(daemon, img, tmp_path, cmd, marker):
    cfg, pod = plain_pod(daemon, "exec", str(tmp_path))
    c = run_container(daemon, pod, cfg, img, "c", ["sleep", "600"])
    rss0 = rss_kib(daemon.proc.pid)
    t0 = time.time()
    with pytest.raises(grpc.RpcError) as e:
        exec_sync(daemon, c, cmd, timeout=2)
    took = time.time() - t0
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value
    assert took < 15, "ExecSync with a 2 s timeout took %.1f s" % took
    # endless output: ExecSync keeps 16 MiB per stream (a buffer of up to 32 MiB); a sanitizer
    # build's quarantine keeps freed buffers for a while, hence the margin
    grown = rss_kib(daemon.proc.pid) - rss0
    print("exec %s: %.1f s, daemon RSS %+d KiB" % (cmd[0], took, grown))
    assert grown < 96 * 1024, "daemon RSS grew by %d KiB" % grown
    assert wait_until(lambda: not exec_left(daemon, c, marker), timeout=5), exec_left(daemon, c, marker)
    # no runc exec left behind on the host either
    runc_root = daemon.config["runtime_handlers"]["runc"]["runtime_root"]
    assert wait_until(lambda: not [p for p in pids_in(runc_root) if " exec " in p[1]], timeout=5), pids_in(runc_root)
    r = exec_sync(daemon, c, ["echo", "still", "fine"], timeout=10)
    assert r.exit_code == 0 and r.stdout == b"still fine\n"
    daemon_healthy(daemon)


def test_fork_bomb_stops_at_pids_limit(daemon, img, tmp_path):
    cfg, pod = plain_pod(daemon, "forkbomb", str(tmp_path / "logs"))
    c = run_container(daemon, pod, cfg, img, "bomb", ["sh", "-c", "pod_probe fork 100000; sleep 600"], wait=False)
    spec = verbose_info(daemon, c)["runtimeSpec"]
    assert spec["linux"]["resources"]["pids"]["limit"] == PIDS_LIMIT, spec["linux"]["resources"]
    from attack_common import wait_log
    out = wait_log(daemon, c, "FORKED", timeout=60)
    # the daemon answers while the container sits at its limit
    daemon_healthy(daemon)
    line = [l for l in out.splitlines() if l.startswith("FORKED")][0]
    forked, why = int(line.split()[1]), line.split()[2]
    assert why == "EAGAIN" and 0 < forked < PIDS_LIMIT, line
    out = wait_log(daemon, c, "REAPED", timeout=60)
    # a second container of the same pod, and an exec, still work afterwards
    c2 = run_container(daemon, pod, cfg, img, "after", ["sh", "-c", "echo alive"], wait=False)
    code, out2 = finish(daemon, c2)
    assert code == 0 and "alive" in out2, out2
    r = exec_sync(daemon, c, ["echo", "ok"], timeout=10)
    assert r.exit_code == 0 and r.stdout == b"ok\n"
    daemon_healthy(daemon)


def test_default_pids_limit_in_every_container(tmp_path, img_default):
    """Without configuration, containers still get the handler's default pids limit (4096)."""
    d, ref = img_default
    cfg, pod = plain_pod(d, "defaults", str(tmp_path))
    c = run_container(d, pod, cfg, ref, "c", ["sleep", "600"])
    spec = verbose_info(d, c)["runtimeSpec"]
    assert spec["linux"]["resources"]["pids"]["limit"] == 4096, spec["linux"]["resources"]
    code, out = sh(d, c, "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null")
    assert "4096" in out, out


@pytest.fixture
def img_default(attacker_image, tmp_path):
    from conftest import Daemon, check_sanitizer_clean, remove_tree
    workdir = str(tmp_path / "d")
    os.makedirs(workdir)
    d = Daemon(workdir, {})
    try:
        pull(d, attacker_image)
        yield d, attacker_image
        pb_ = d.pb
        for c in d.runtime.ListContainers(pb_.ListContainersRequest(), timeout=30).containers:
            d.runtime.RemoveContainer(pb_.RemoveContainerRequest(container_id=c.id), timeout=60)
        for p in d.runtime.ListPodSandbox(pb_.ListPodSandboxRequest(), timeout=30).items:
            d.runtime.RemovePodSandbox(pb_.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60)
    finally:
        assert d.terminate() == 0
        check_sanitizer_clean(d.log())
        remove_tree(workdir)
