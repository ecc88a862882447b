"""Attach on real pods of the runc handler, through the daemon's streaming server and the container
monitor's attach socket, over SPDY and WebSocket (streaming_client.RemoteCommand): output of a
running container, stdin echoed by `cat`, several clients at once, a tty with resize, stdin_once,
clients that vanish or stop reading, RPC errors; containers without stdin/tty keep their stdio as
before; the attach socket is 0600 and outside the rootfs; no fds leak in the daemon or monitor."""
import os
import stat
import time

import grpc
import pytest

from pods_common import (cleanup_pods, container_config, create, exec_sync, image_ref, info_json,  # noqa: F401
                         log_text, pids_in, pod_config, pull, read_cri_log, registry_dir, run_pod, start,
                         status, wait_for, wait_state)
from streaming_client import RemoteCommand

pytestmark = pytest.mark.usefixtures("cleanup_pods")

TICKER = "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.1; done"


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@pytest.fixture
def pod(daemon, image_ref, tmp_path):  # noqa: F811
    """A ready pod; yields a function that creates and starts a container in it. After the test
    the daemon holds no more fds than before (sessions are closed asynchronously: wait)."""
    pb = daemon.pb
    pull(daemon, image_ref)
    cfg = pod_config(pb, "att", log_dir=str(tmp_path))
    pod_id = run_pod(daemon, cfg)
    base = {}

    def fd_base():  # per daemon process (a test may restart it)
        return base.setdefault(daemon.proc.pid, fd_count(daemon.proc.pid))

    fd_base()

    def make(name, command, stdin=False, stdin_once=False, tty=False, started=True):
        cc = container_config(pb, name, image_ref, command=command, log_path=name + ".log")
        cc.stdin, cc.stdin_once, cc.tty = stdin, stdin_once, tty
        cid = create(daemon, pod_id, cfg, cc)
        if started:
            start(daemon, cid)
            wait_state(daemon, cid, pb.CONTAINER_RUNNING)
        return cid

    make.pod_id = pod_id
    make.fd_base = fd_base
    make.log = lambda name: str(tmp_path / (name + ".log"))
    yield make
    wait_for(lambda: fd_count(daemon.proc.pid) <= fd_base(), timeout=10,
             what="daemon fds back to %d (now %d)" % (fd_base(), fd_count(daemon.proc.pid)))


def attach_url(daemon, cid, stdin=False, stdout=True, stderr=True, tty=False):
    pb = daemon.pb
    return daemon.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=stdin, stdout=stdout,
                                                  stderr=stderr and not tty, tty=tty), timeout=10).url


def attach(daemon, cid, transport, stdin=False, stdout=True, stderr=True, tty=False):
    url = attach_url(daemon, cid, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    return RemoteCommand(url, transport, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)


def rpc_code(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def monitor_of(daemon, cid):
    mons = [p for p, cmd in pids_in(cid) if "vgpu-monitor" in cmd]
    assert len(mons) == 1, mons
    return mons[0]


def container_pid(daemon, cid):
    return info_json(daemon.runtime.ContainerStatus(daemon.pb.ContainerStatusRequest(
        container_id=cid, verbose=True), timeout=10))["pid"]


def fd_targets(pid):
    d = "/proc/%d/fd" % pid
    return {int(f): os.readlink(os.path.join(d, f)) for f in os.listdir(d)}


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_attach_sees_output(daemon, pod, transport):
    cid = pod("ticker", ["sh", "-c", TICKER])
    s = attach(daemon, cid, transport)
    assert s.read_until(lambda s: s.stdout.count(b"\n") >= 3 and b"tock" in s.stderr), (s.stdout, s.stderr)
    # live output, split by stream as the container wrote it
    assert b"tick" in s.stdout and b"tock" not in s.stdout and b"tick" not in s.stderr
    s.close()
    # the container goes on, and so does its log
    time.sleep(0.3)
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING
    assert any(b"tick" in l for l in log_text(read_cri_log(pod.log("ticker")), "stdout"))


def test_plain_container_stdio_unchanged(daemon, pod):
    """No stdin, no tty: stdin /dev/null, stdout/stderr pipes, nothing else, as before attach."""
    cid = pod("plain", ["sleep", "100000"])
    fds = fd_targets(container_pid(daemon, cid))
    assert sorted(fds) == [0, 1, 2], fds
    assert fds[0] == "/dev/null" and fds[1].startswith("pipe:") and fds[2].startswith("pipe:"), fds
    # the attach socket: the daemon's only, 0600, in the bundle dir (not in the rootfs)
    sock = os.path.join(daemon.state_dir, "containers", cid, "attach")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    r = exec_sync(daemon, cid, ["sh", "-c", "find / -xdev -type s; ls /proc/1/fd"])
    assert r.exit_code == 0 and r.stdout.split() == [b"0", b"1", b"2"], r.stdout


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_attach_stdin_cat(daemon, pod, transport):
    cid = pod("cat", ["cat"], stdin=True)
    fds = fd_targets(container_pid(daemon, cid))
    assert sorted(fds) == [0, 1, 2] and fds[0].startswith("pipe:"), fds
    s = attach(daemon, cid, transport, stdin=True)
    s.send(b"hello through attach\n")
    assert s.read_until(lambda s: b"hello through attach\n" in s.stdout), s.stdout
    # a second client, output only, sees what the first one's input makes
    watcher = attach(daemon, cid, "ws" if transport == "spdy" else "spdy")
    # once the watcher sees a line, its session is with the monitor: it gets all that follows
    for i in range(100):
        s.send(b"marker %d\n" % i)
        if watcher.read_until(lambda w: b"marker" in w.stdout, timeout=0.3):
            break
    big = b"".join(b"line %d of many\n" % i for i in range(3000))
    s.send(big)
    assert s.read_until(lambda s: s.stdout.endswith(big)), len(s.stdout)
    assert watcher.read_until(lambda w: w.stdout.endswith(big)), len(watcher.stdout)
    s.close()
    watcher.close()
    # without stdin_once the container's stdin stays open across detaches: attach again
    s = attach(daemon, cid, transport, stdin=True)
    s.send(b"again\n")
    assert s.read_until(lambda s: b"again\n" in s.stdout), s.stdout
    s.close()
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING
    # the log has it all too (the monitor writes it right after handing the bytes to clients)
    lines = lambda: log_text(read_cri_log(pod.log("cat")), "stdout")  # noqa: E731
    wait_for(lambda: {b"hello through attach", b"again", b"line 2999 of many"} <= set(lines()), what="the log")


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_attach_tty_resize(daemon, pod, transport):
    cid = pod("tty", ["sh"], stdin=True, tty=True)
    fds = fd_targets(container_pid(daemon, cid))
    assert all(fds[i].startswith("/dev/pts/") for i in (0, 1, 2)), fds  # (sh adds /dev/tty itself)
    s = attach(daemon, cid, transport, stdin=True, tty=True)
    s.resize(100, 37)
    # (the tty echoes the command line: the markers are what only the output contains)
    s.send(b"echo T=$TERM; test -t 0 && echo tty-$((40+2))\r")
    assert s.read_until(lambda s: b"tty-42" in s.stdout), s.stdout
    assert b"T=xterm\r\n" in s.stdout, s.stdout

    def size_shown(rows_cols):
        # the resize (control socket) and the line typed (stdin pipe) take separate ways to the
        # monitor: ask again until the new size shows, or fail after a few seconds
        for _ in range(20):
            s.send(b"stty size\r")
            if s.read_until(lambda s: rows_cols + b"\r\n" in s.stdout, timeout=0.5):
                return True
        return False

    assert size_shown(b"37 100"), s.stdout
    s.resize(120, 41)
    assert size_shown(b"41 120"), s.stdout
    s.close()
    # tty output is logged as stdout
    wait_for(lambda: any(b"41 120" in l for l in log_text(read_cri_log(pod.log("tty")), "stdout")),
             what="tty output in the CRI log")
    # the shell lives on after the detach; a later attach still drives it
    s = attach(daemon, cid, transport, stdin=True, tty=True)
    s.send(b"echo $((6*7))\r")
    assert s.read_until(lambda s: b"\n42\r\n" in s.stdout), s.stdout
    s.send(b"exit 4\r")
    st = s.wait_end()
    assert st and st["status"] == "Success", (st, s.stdout)
    assert wait_state(daemon, cid, daemon.pb.CONTAINER_EXITED).exit_code == 4


@pytest.mark.parametrize("how", ["eof", "detach"])
def test_attach_stdin_once(daemon, pod, how):
    cid = pod("once-" + how, ["sh", "-c", "cat; echo cat-ended; exit 7"], stdin=True, stdin_once=True)
    s = attach(daemon, cid, "spdy" if how == "eof" else "ws", stdin=True)
    s.send(b"only once\n")
    assert s.read_until(lambda s: b"only once\n" in s.stdout), s.stdout
    if how == "eof":
        s.close_stdin()  # the client's stdin ends: the container's stdin closes, cat exits
        st = s.wait_end()
        assert b"cat-ended" in s.stdout and st == {"metadata": {}, "status": "Success"}, (s.stdout, st)
    else:
        s.close()        # the client detaches
    assert wait_state(daemon, cid, daemon.pb.CONTAINER_EXITED).exit_code == 7


def test_attach_stdin_once_second_client(daemon, pod):
    """stdin_once: a client that only watches does not use up stdin; after the first client
    with stdin detaches, the container reads EOF."""
    cid = pod("once-two", ["sh", "-c", "cat; echo cat-ended; sleep 100000"], stdin=True, stdin_once=True)
    watcher = attach(daemon, cid, "spdy")
    watcher.close()
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING
    s = attach(daemon, cid, "ws", stdin=True)
    s.send(b"x\n")
    assert s.read_until(lambda s: b"x\n" in s.stdout)
    s.close()
    wait_for(lambda: any(b"cat-ended" in l for l in log_text(read_cri_log(pod.log("once-two")))),
             what="cat reading EOF")


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_attach_client_vanishes(daemon, pod, transport):
    cid = pod("vanish", ["cat"], stdin=True)
    mon = monitor_of(daemon, cid)
    mon_fds = fd_count(mon)
    s = attach(daemon, cid, transport, stdin=True)
    s.send(b"before\n")
    assert s.read_until(lambda s: b"before\n" in s.stdout)
    assert fd_count(mon) > mon_fds
    s.vanish()
    wait_for(lambda: fd_count(mon) == mon_fds, what="monitor fds back to %d" % mon_fds)
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING
    s = attach(daemon, cid, transport, stdin=True)
    s.send(b"after\n")
    assert s.read_until(lambda s: b"after\n" in s.stdout), s.stdout
    s.close()
    wait_for(lambda: fd_count(mon) == mon_fds, what="monitor fds back to %d" % mon_fds)


def test_attach_stuck_client_never_blocks_container(daemon, pod):
    """A client that stops reading is detached by the monitor; the container and the log go on."""
    cid = pod("flood", ["sh", "-c", "read x; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 12000000;"
                                    " echo; echo flood-done; exec sleep 100000"], stdin=True)
    stuck = attach(daemon, cid, "spdy")   # never reads
    go = attach(daemon, cid, "ws", stdin=True, stdout=False, stderr=False)
    time.sleep(0.3)
    go.send(b"go\n")
    go.close()
    wait_for(lambda: b"flood-done" in open(pod.log("flood"), "rb").read()[-4096:], timeout=60,
             what="the container's output to reach the log while a client is stuck")
    # the monitor gave up on the stuck client: its session ended
    assert stuck.read_until(lambda s: s.ended, timeout=30), "stuck client not detached"
    stuck.close()
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING


def test_attach_ends_when_container_exits(daemon, pod):
    cid = pod("short", ["sh", "-c", "read x; echo bye $x; exit 3"], stdin=True)
    s = attach(daemon, cid, "spdy", stdin=True)
    s.send(b"now\n")
    st = s.wait_end()
    # attach reports the session, not the exit code (as kubelet)
    assert b"bye now" in s.stdout and st["status"] == "Success", (s.stdout, st)
    assert wait_state(daemon, cid, daemon.pb.CONTAINER_EXITED).exit_code == 3


def test_attach_rpc_errors(daemon, pod):
    pb = daemon.pb
    attach_rpc = lambda cid, **kw: daemon.runtime.Attach(pb.AttachRequest(container_id=cid, **kw),  # noqa: E731
                                                         timeout=10)
    code, msg = rpc_code(lambda: attach_rpc("nope", stdout=True))
    assert code == grpc.StatusCode.NOT_FOUND, (code, msg)
    created = pod("created", ["true"], started=False)
    code, msg = rpc_code(lambda: attach_rpc(created, stdout=True))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and created in msg, (code, msg)
    start(daemon, created)
    wait_state(daemon, created, pb.CONTAINER_EXITED)
    code, msg = rpc_code(lambda: attach_rpc(created, stdout=True))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and created in msg, (code, msg)
    plain = pod("plain", ["sleep", "100000"])
    code, msg = rpc_code(lambda: attach_rpc(plain, stdin=True, stdout=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "stdin" in msg, (code, msg)
    code, msg = rpc_code(lambda: attach_rpc(plain, stdout=True, tty=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tty" in msg, (code, msg)
    tty = pod("tty", ["sh"], stdin=True, tty=True)
    code, msg = rpc_code(lambda: attach_rpc(tty, stdin=True, stdout=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tty" in msg, (code, msg)
    code, msg = rpc_code(lambda: attach_rpc(tty, stdout=True, stderr=True, tty=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
    # a valid request still gets a URL
    assert "/attach/" in attach_rpc(tty, stdin=True, stdout=True, tty=True).url


def test_attach_after_daemon_restart(daemon, pod):
    """The monitor and its attach socket outlive the daemon: after kill -9 and a restart, attach
    reaches the same container and its stdin."""
    cid = pod("survivor", ["cat"], stdin=True)
    s = attach(daemon, cid, "spdy", stdin=True)
    s.send(b"before restart\n")
    assert s.read_until(lambda s: b"before restart\n" in s.stdout)
    daemon.restart()
    s.close()
    pod.fd_base()
    assert status(daemon, cid).state == daemon.pb.CONTAINER_RUNNING
    s = attach(daemon, cid, "ws", stdin=True)
    s.send(b"after restart\n")
    assert s.read_until(lambda s: b"after restart\n" in s.stdout), s.stdout
    s.close()
