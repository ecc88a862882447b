"""Exec and PortForward on real pods of the runc handler, through the daemon's streaming server
(SPDY and WebSocket clients of streaming_client.py): output, stdin, exit codes, TTY with resize,
a client that goes away, port-forward to a server inside the pod's network namespace; NOT_FOUND
and FAILED_PRECONDITION at the RPC (Attach itself: test_attach_pods.py); no runc exec or exec'd
process is left behind."""
import socket
import time

import grpc
import pytest

from pods_common import (cleanup_pods, container_config, create, image_ref, pids_in, pod_config, pull,  # noqa: F401
                         registry_dir, run_pod, start, wait_for, wait_state)
from streaming_client import PortForward, SpdyConn, spdy_exec, ws_exec

pytestmark = pytest.mark.usefixtures("cleanup_pods")

PORT = 8089


@pytest.fixture
def running(daemon, image_ref, tmp_path):  # noqa: F811
    """A pod with a long-running container (and an echo server on PORT); cleanup_pods removes it."""
    pb = daemon.pb
    pull(daemon, image_ref)
    cfg = pod_config(pb, "sx", log_dir=str(tmp_path))
    pod_id = run_pod(daemon, cfg)
    cid = create(daemon, pod_id, cfg, container_config(
        pb, "main", image_ref, command=["sh", "-c", "nc -ll -p %d -e cat & exec sleep 100000" % PORT]))
    start(daemon, cid)
    wait_state(daemon, cid, pb.CONTAINER_RUNNING)
    yield daemon, pb, pod_id, cfg, cid
    # every exec of the test has been reaped, none of its runc processes is left
    wait_for(lambda: not exec_leftovers(), timeout=5, what="no runc exec left behind")


def exec_url(daemon, pb, cid, cmd, stdin=False, stdout=True, stderr=True, tty=False):
    return daemon.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, stdin=stdin, stdout=stdout,
                                              stderr=stderr and not tty, tty=tty), timeout=10).url


def rpc_code(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def exec_leftovers():
    """runc exec processes of the streaming backend (their pid file names them)."""
    return [p for p in pids_in("stream-exec-") if "runc" in p[1]]


def test_exec_stdout_stderr(running):
    daemon, pb, _, _, cid = running
    r = spdy_exec(exec_url(daemon, pb, cid, ["sh", "-c", "echo out; echo err >&2; hostname"]))
    assert r.stdout == b"out\nsx\n" and r.stderr == b"err\n" and r.exit_code == 0, (r.stdout, r.stderr, r.error)
    # WebSocket (v5) as well
    r = ws_exec(exec_url(daemon, pb, cid, ["echo", "hello", "ws"]))
    assert r.stdout == b"hello ws\n" and r.exit_code == 0, (r.stdout, r.error)


def test_exec_stdin(running):
    daemon, pb, _, _, cid = running
    data = b"".join(b"line %d\n" % i for i in range(5000))
    r = spdy_exec(exec_url(daemon, pb, cid, ["cat"], stdin=True), stdin=data)
    assert r.stdout == data and r.exit_code == 0
    r = ws_exec(exec_url(daemon, pb, cid, ["sh", "-c", "wc -c"], stdin=True, stderr=False), stdin=b"12345")
    assert r.stdout.strip() == b"5" and r.exit_code == 0, (r.stdout, r.error)


def test_exec_exit_codes(running):
    daemon, pb, _, _, cid = running
    r = spdy_exec(exec_url(daemon, pb, cid, ["sh", "-c", "exit 3"]))
    assert r.exit_code == 3
    assert r.status["reason"] == "NonZeroExitCode"
    r = spdy_exec(exec_url(daemon, pb, cid, ["sh", "-c", "kill -9 $$"]))
    assert r.exit_code == 137
    r = spdy_exec(exec_url(daemon, pb, cid, ["/no/such/program"]))
    assert r.exit_code != 0 or r.status.get("status") == "Failure"


def test_exec_tty(running):
    daemon, pb, _, _, cid = running
    url = exec_url(daemon, pb, cid, ["sh", "-c", "for i in $(seq 50); do s=$(stty size 2>/dev/null)"
                                                " && [ \"$s\" = '37 100' ] && break; sleep 0.1; done;"
                                                " echo size:$s; test -t 0 && echo is-a-tty; exit 5"], tty=True)
    r = spdy_exec(url, stderr=False, tty=True, resize=[(100, 37)])
    assert b"size:37 100" in r.stdout and b"is-a-tty" in r.stdout and b"\r\n" in r.stdout, r.stdout
    assert r.exit_code == 5
    # input through the tty: the container's pty echoes it and cat copies it
    url = exec_url(daemon, pb, cid, ["sh", "-c", "read x; echo got:$x"], stdin=True, tty=True)
    r = spdy_exec(url, stdin=b"abc\r", stderr=False, tty=True, resize=[(80, 24)])
    assert b"got:abc" in r.stdout and r.exit_code == 0, r.stdout


def test_exec_client_goes_away(running):
    daemon, pb, _, _, cid = running
    url = exec_url(daemon, pb, cid, ["sleep", "4242"], stderr=False)
    c = SpdyConn(url, ["v4.channel.k8s.io"])
    c.create_stream({"streamType": "error"})
    c.create_stream({"streamType": "stdout"})
    sleeps = lambda: [p for p in pids_in("4242") if p[1].startswith("sleep 4242")]  # noqa: E731
    wait_for(lambda: sleeps() and exec_leftovers(), what="exec'd sleep")
    c.close()
    wait_for(lambda: not sleeps() and not exec_leftovers(), what="exec killed and reaped")


def test_port_forward(running):
    daemon, pb, pod_id, _, _ = running
    url = daemon.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id, port=[PORT]), timeout=10).url
    pf = PortForward(url)
    try:
        deadline = time.time() + 10
        while True:  # the server in the pod may still be starting
            data, err = pf.roundtrip(PORT, b"ping through the pod\n")
            if data or time.time() > deadline:
                break
            time.sleep(0.2)
        assert data == b"ping through the pod\n" and err == b"", (data, err)
        big = bytes(range(256)) * 1024
        data, err = pf.roundtrip(PORT, big)
        assert data == big and err == b""
        # nothing listens on this port inside the pod (the host's listener is not reachable)
        host = socket.socket()
        host.bind(("127.0.0.1", 0))
        host.listen(1)
        hport = host.getsockname()[1]
        data, err = pf.roundtrip(hport, b"x")
        host.close()
        assert data == b"" and b"onnection refused" in err, (data, err)
    finally:
        pf.close()


def test_rpc_errors(running, image_ref):  # noqa: F811
    daemon, pb, pod_id, cfg, _ = running
    code, msg = rpc_code(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id="nope", cmd=["true"],
                                                                     stdout=True)))
    assert code == grpc.StatusCode.NOT_FOUND, (code, msg)
    code, msg = rpc_code(lambda: daemon.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id="nope",
                                                                                   port=[80])))
    assert code == grpc.StatusCode.NOT_FOUND, (code, msg)
    done = create(daemon, pod_id, cfg, container_config(pb, "done", image_ref, command=["true"]))
    code, msg = rpc_code(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id=done, cmd=["true"],
                                                                     stdout=True)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and done in msg, (code, msg)
    start(daemon, done)
    wait_state(daemon, done, pb.CONTAINER_EXITED)
    code, msg = rpc_code(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id=done, cmd=["true"],
                                                                     stdout=True)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and done in msg, (code, msg)
    code, msg = rpc_code(lambda: daemon.runtime.Attach(pb.AttachRequest(container_id=done, stdout=True)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and done in msg, (code, msg)  # test_attach_pods.py
    daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=done), timeout=30)


def test_stopped_pod_port_forward(daemon, image_ref):  # noqa: F811
    pb = daemon.pb
    cfg = pod_config(pb, "sx-stopped")
    pod_id = run_pod(daemon, cfg)
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
    code, msg = rpc_code(lambda: daemon.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id,
                                                                                   port=[80])))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, msg)

