"""Streaming server (Exec / Attach / PortForward) over the wire, both transports (SPDY/3.1 and
WebSocket), against vgpu-stream-testd: the real server and CRI handlers with the host TEST
BACKEND (commands run as host processes, ports forwarded to host loopback). Our own client
(streaming_client.py) speaks the protocols as client-go does. Every test checks that the server
is left with no sessions, no extra fds and no child processes."""
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import streaming_client as sc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("VGPU_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("VGPU_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
TESTD = os.path.join(BUILD_DIR, "test", "unit", "vgpu-stream-testd")


class TestD:
    __test__ = False

    def __init__(self, *args):
        self.log = tempfile.TemporaryFile(mode="w+")  # not a pipe: nobody drains it while we wait
        self.p = subprocess.Popen([TESTD, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, text=True)
        ready = self.p.stdout.readline().split()
        assert ready and ready[0] == "READY", ready
        self.base, self.pid = ready[1], int(ready[2])
        self.lock = threading.Lock()

    def cmd(self, **o):
        with self.lock:
            self.p.stdin.write(json.dumps(o) + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline().strip()
        word, _, rest = line.partition(" ")
        if word != "OK":
            raise RuntimeError(rest)
        return rest

    def exec_url(self, cmd, stdin=False, stdout=True, stderr=True, tty=False, cid="c1"):
        return self.cmd(op="exec", id=cid, cmd=cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def children(self):
        kids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.pid and fields[0] != "Z":
                    kids.append(int(pid))
        return kids

    def settle(self, timeout=20):
        """Wait until no session is live; returns (fds, children)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cmd(op="sessions") == "0":
                break
            time.sleep(0.02)
        assert self.cmd(op="sessions") == "0", "sessions still live"
        return self.fds(), self.children()

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="module")
def testd():
    d = TestD("--token-ttl-ms", "5000", "--create-timeout-ms", "700")
    # an attachable test "container", started before the leak checks' baseline
    d.cmd(op="container", id="ctr-attach", cmd=["sh", "-c", "while read l; do echo ctr:$l; done"])
    yield d
    log = d.stop()
    assert d.p.returncode == 0, log


@pytest.fixture(autouse=True)
def no_leaks(testd):
    fds, kids = testd.settle()
    yield
    deadline = time.monotonic() + 3
    while True:  # the HTTP side closes refused connections asynchronously
        fds2, kids2 = testd.settle()
        if (fds2, kids2) == (fds, kids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert kids2 == kids, "child processes left: %s" % kids2
    assert fds2 == fds, "fds %d -> %d" % (fds, fds2)


@pytest.fixture
def echo_server():
    """A TCP echo server on loopback (the 'pod' port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


# ---- exec over SPDY ----

def test_spdy_exec_stdin_stdout_stderr_success(testd):
    url = testd.exec_url(["sh", "-c", "cat; echo to-stderr >&2"], stdin=True)
    assert url.startswith(testd.base + "/exec/")
    r = sc.spdy_exec(url, stdin=b"hello over spdy\n")
    assert r.protocol == "v4.channel.k8s.io"
    assert r.stdout == b"hello over spdy\n"
    assert r.stderr == b"to-stderr\n"
    assert r.status == {"metadata": {}, "status": "Success"}
    assert r.exit_code == 0


def test_spdy_exec_nonzero_exit_code(testd):
    r = sc.spdy_exec(testd.exec_url(["sh", "-c", "echo out; exit 42"]))
    assert r.stdout == b"out\n"
    st = r.status
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]
    assert r.exit_code == 42


def test_spdy_exec_large_stdin_and_output(testd):
    """More than the pipe and socket buffers both ways at once: no deadlock, nothing lost."""
    blob = os.urandom(3 << 20)
    r = sc.spdy_exec(testd.exec_url(["cat"], stdin=True, stderr=False), stdin=blob, stderr=False, timeout=20)
    assert r.stdout == blob
    assert r.exit_code == 0


def test_spdy_exec_command_not_found(testd):
    r = sc.spdy_exec(testd.exec_url(["/nonexistent/binary"]))
    assert r.exit_code == 127


def test_spdy_older_protocols(testd):
    r = sc.spdy_exec(testd.exec_url(["sh", "-c", "exit 5"]), protocols=["v3.channel.k8s.io"])
    assert r.protocol == "v3.channel.k8s.io"
    assert r.error == b"command terminated with non-zero exit code: exit status 5"
    r = sc.spdy_exec(testd.exec_url(["echo", "v2"]), protocols=["v2.channel.k8s.io"])
    assert r.protocol == "v2.channel.k8s.io" and r.stdout == b"v2\n" and r.error == b""


def test_spdy_unsupported_protocol_refused(testd):
    url = testd.exec_url(["true"])
    with pytest.raises(sc.HTTPError) as e:
        sc.spdy_exec(url, protocols=["v9.channel.k8s.io"])
    assert e.value.status == 403
    assert "unable to negotiate protocol" in e.value.body
    assert e.value.headers.get("x-accepted-stream-protocol-versions") == "v4.channel.k8s.io"


def test_spdy_exec_tty_and_resize(testd):
    url = testd.exec_url(["sh", "-c", "sleep 0.3; stty size; read line; echo got:$line"], stdin=True, tty=True,
                         stderr=False)
    r = sc.spdy_exec(url, stdin=b"typed\n", tty=True, stderr=False, resize=[(100, 30)])
    out = r.stdout.replace(b"\r\n", b"\n")
    assert b"30 100\n" in out
    assert b"got:typed\n" in out
    assert r.exit_code == 0


def test_spdy_exec_tty_resize_while_running(testd):
    url = testd.exec_url(["sh", "-c", "stty size; read a; stty size"], stdin=True, tty=True, stderr=False)
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    err = c.create_stream({"streamType": "error"})
    sin = c.create_stream({"streamType": "stdin"})
    out = c.create_stream({"streamType": "stdout"})
    rsz = c.create_stream({"streamType": "resize"})
    c.send_data(rsz, b'{"Width":80,"Height":24}')
    c.pump(lambda: b"24 80" in c.streams[out].data)
    c.send_data(rsz, b'{"Width":132,"Height":50}{"Width":') # a second object split across frames
    c.send_data(rsz, b'133,"Height":51}')
    time.sleep(0.2)
    c.send_data(sin, b"\n")
    c.pump(lambda: c.streams[err].fin)
    assert b"51 133" in c.streams[out].data
    c.close()


# ---- exec over WebSocket ----

def test_websocket_v5_exec(testd):
    url = testd.exec_url(["sh", "-c", "cat; echo e >&2; exit 7"], stdin=True)
    r = sc.ws_exec(url, stdin=b"over websocket\n")
    assert r.protocol == "v5.channel.k8s.io"
    assert r.stdout == b"over websocket\n"
    assert r.stderr == b"e\n"
    assert r.exit_code == 7


def test_websocket_v4_exec(testd):
    r = sc.ws_exec(testd.exec_url(["echo", "hi"]), protocols=("v4.channel.k8s.io",))
    assert r.protocol == "v4.channel.k8s.io"
    assert r.stdout == b"hi\n" and r.exit_code == 0


def test_websocket_tty_resize(testd):
    url = testd.exec_url(["sh", "-c", "sleep 0.3; stty size"], stdin=True, tty=True, stderr=False)
    r = sc.ws_exec(url, resize=[(90, 33)], close_stdin=False)
    assert b"33 90" in r.stdout
    assert r.exit_code == 0


# ---- attach ----

def test_attach_to_running_container(testd):
    url = testd.cmd(op="attach", id="ctr-attach", stdin=True, stdout=True, stderr=False)
    assert "/attach/" in url
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    c.create_stream({"streamType": "error"})
    sin = c.create_stream({"streamType": "stdin"})
    out = c.create_stream({"streamType": "stdout"})
    c.send_data(sin, b"one\n")
    assert c.pump(lambda: b"ctr:one\n" in c.streams[out].data)
    c.close()  # detach: the container goes on
    testd.settle()
    url = testd.cmd(op="attach", id="ctr-attach", stdin=True, stdout=True, stderr=False)
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    c.create_stream({"streamType": "error"})
    sin = c.create_stream({"streamType": "stdin"})
    out = c.create_stream({"streamType": "stdout"})
    c.send_data(sin, b"two\n")
    assert c.pump(lambda: b"ctr:two\n" in c.streams[out].data)
    c.close()


# ---- tokens and requests ----

def test_rpc_validation_errors(testd):
    with pytest.raises(RuntimeError, match="tty and stderr cannot both be true"):
        testd.exec_url(["true"], tty=True, stderr=True)
    with pytest.raises(RuntimeError, match="one of stdin, stdout, or stderr must be set"):
        testd.exec_url(["true"], stdout=False, stderr=False)
    with pytest.raises(RuntimeError, match="missing command"):
        testd.exec_url([])
    with pytest.raises(RuntimeError, match="^2 .*not found"):
        testd.exec_url(["true"], cid="missing")
    with pytest.raises(RuntimeError, match="^16 .*not running"):
        testd.exec_url(["true"], cid="stopped")
    with pytest.raises(RuntimeError, match="missing required pod_sandbox_id"):
        testd.cmd(op="portforward", id="")
    with pytest.raises(RuntimeError, match="invalid port 70000"):
        testd.cmd(op="portforward", id="pod", ports=[70000])


def test_token_used_twice(testd):
    url = testd.exec_url(["true"])
    assert sc.spdy_exec(url).exit_code == 0
    with pytest.raises(sc.HTTPError) as e:
        sc.spdy_exec(url)
    assert e.value.status == 404 and "already used" in e.value.body


def test_token_unknown_and_wrong_operation(testd):
    with pytest.raises(sc.HTTPError) as e:
        sc.spdy_exec(testd.base + "/exec/0123456789abcdef0123456789abcdef")
    assert e.value.status == 404 and "unknown" in e.value.body
    url = testd.exec_url(["true"])
    with pytest.raises(sc.HTTPError) as e:
        sc.spdy_exec(url.replace("/exec/", "/attach/"))
    assert e.value.status == 404 and "another operation" in e.value.body


def test_token_expired():
    d = TestD("--token-ttl-ms", "200")
    try:
        url = d.exec_url(["true"])
        time.sleep(0.4)
        with pytest.raises(sc.HTTPError) as e:
            sc.spdy_exec(url)
        assert e.value.status == 404 and ("expired" in e.value.body or "unknown" in e.value.body)
    finally:
        assert "ERROR" not in d.stop()


def test_plain_http_without_upgrade(testd):
    url = testd.exec_url(["true"])
    host, port = testd.base[len("http://"):].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % url[len(testd.base):]).encode())
        resp = s.recv(4096).decode()
    assert resp.startswith("HTTP/1.1 400") and "missing upgrade headers" in resp


# ---- broken clients ----

def test_malformed_frame_gets_goaway(testd):
    url = testd.exec_url(["sleep", "30"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    c.create_stream({"streamType": "error"})
    # a control frame of SPDY version 2
    c.send_raw(struct.pack(">HHI", 0x8002, 1, 4) + b"\0\0\0\1")
    c.pump(lambda: c.goaway is not None, timeout=5)
    assert c.goaway == 1  # PROTOCOL_ERROR
    c.pump(lambda: False, timeout=5)  # and the server closes the connection
    assert c.closed


def test_garbage_header_block_gets_goaway(testd):
    url = testd.exec_url(["true"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    payload = struct.pack(">IIBB", 1, 0, 0, 0) + b"definitely not zlib"
    c.control(sc.SYN_STREAM, payload)
    c.pump(lambda: c.goaway is not None, timeout=5)
    assert c.goaway == 1
    c.close()


def test_data_for_unknown_stream_and_ping(testd):
    url = testd.exec_url(["sh", "-c", "sleep 0.2; echo ok"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    err = c.create_stream({"streamType": "error"})
    out = c.create_stream({"streamType": "stdout"})
    c.send_data(99, b"nobody")  # answered with RST_STREAM, the session goes on
    c.ping(7)
    bogus = c.create_stream({"streamType": "bogus"})
    c.create_stream({"streamType": "stderr"})
    c.pump(lambda: c.streams[err].fin)
    assert c.streams[out].data == b"ok\n"
    assert c.streams[bogus].reset == 3  # REFUSED_STREAM
    assert getattr(c, "last_ping", None) == 7
    c.close()


def test_client_vanishes_mid_stream(testd):
    url = testd.exec_url(["sh", "-c", "echo started; sleep 60"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    c.create_stream({"streamType": "error"})
    out = c.create_stream({"streamType": "stdout"})
    c.create_stream({"streamType": "stderr"})
    c.pump(lambda: b"started" in c.streams[out].data)
    assert testd.children(), "the exec'd process should be running"
    c.shutdown_and_drain()
    # no_leaks checks that the sleep was killed and every fd closed


def test_websocket_client_vanishes(testd):
    import websocket
    url = testd.exec_url(["sleep", "60"], stdin=True)
    ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"])
    ws.send_binary(b"\x00partial")
    time.sleep(0.1)
    ws.sock.close()


def test_streams_not_created_in_time(testd):
    url = testd.exec_url(["true"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    err = c.create_stream({"streamType": "error"})  # stdout, stderr never come
    c.pump(lambda: c.streams[err].fin, timeout=5)
    st = json.loads(bytes(c.streams[err].data))
    assert st["status"] == "Failure" and "timed out waiting for client to create streams" in st["message"]
    c.close()


# ---- port-forward ----

def test_port_forward_spdy(testd, echo_server):
    url = testd.cmd(op="portforward", id="pod1", ports=[echo_server])
    assert "/portforward/" in url
    pf = sc.PortForward(url)
    assert pf.c.protocol == "portforward.k8s.io"
    blob = os.urandom(1 << 20)
    data, err = pf.roundtrip(echo_server, blob)
    assert data == blob and err == b""
    data, err = pf.roundtrip(echo_server, b"second connection, same session")
    assert data == b"second connection, same session"
    pf.close()


def test_port_forward_concurrent_requests(testd, echo_server):
    pf = sc.PortForward(testd.cmd(op="portforward", id="pod1"))
    pairs = [pf.open(echo_server) for _ in range(4)]
    for i, (_, d) in enumerate(pairs):
        pf.c.send_data(d, b"req%d" % i, fin=True)
    s = pf.c.streams
    pf.c.pump(lambda: all(s[d].fin and s[e].fin for e, d in pairs))
    assert [bytes(s[d].data) for _, d in pairs] == [b"req%d" % i for i in range(4)]
    pf.close()


def test_port_forward_refused_port(testd):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    pf = sc.PortForward(testd.cmd(op="portforward", id="pod1"))
    data, err = pf.roundtrip(port, b"x")
    assert data == b""
    assert b"error forwarding port %d to pod pod1" % port in err and b"refused" in err
    pf.close()


def test_port_forward_websocket_tunnel(testd, echo_server):
    pf = sc.PortForward(testd.cmd(op="portforward", id="pod1"), tunnel=True)
    assert pf.c.protocol == "SPDY/3.1+portforward.k8s.io"
    blob = os.urandom(256 << 10)
    data, err = pf.roundtrip(echo_server, blob)
    assert data == blob and err == b""
    pf.close()


def test_port_forward_client_vanishes(testd):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    pf = sc.PortForward(testd.cmd(op="portforward", id="pod1"))
    e, d = pf.open(port)
    pf.c.send_data(d, b"hello")
    conn, _ = srv.accept()
    assert conn.recv(5) == b"hello"
    pf.c.shutdown_and_drain()
    conn.settimeout(5)
    assert conn.recv(10) == b""  # the server closed its side towards the pod
    conn.close()
    srv.close()


def test_stop_with_live_sessions():
    """Stopping the server ends live sessions and kills their processes."""
    d = TestD()
    url = d.exec_url(["sleep", "60"])
    c = sc.SpdyConn(url, sc.RC_PROTOCOLS)
    c.create_stream({"streamType": "error"})
    c.create_stream({"streamType": "stdout"})
    c.create_stream({"streamType": "stderr"})
    deadline = time.monotonic() + 5
    while not d.children() and time.monotonic() < deadline:
        time.sleep(0.02)
    kids = d.children()
    assert kids
    t0 = time.monotonic()
    d.stop()
    assert d.p.returncode == 0 and time.monotonic() - t0 < 5
    for k in kids:
        assert not os.path.exists("/proc/%d" % k) or open("/proc/%d/stat" % k).read().split()[2] == "Z"
    c.close()


def test_random_garbage_after_upgrade(testd):
    """Random bytes instead of SPDY: the session ends (GOAWAY or close), the server goes on."""
    import random
    rnd = random.Random(7)
    for i in range(20):
        url = testd.exec_url(["sleep", "30"])
        c = sc.SpdyConn(url, sc.RC_PROTOCOLS, timeout=5)
        if i % 2:
            c.create_stream({"streamType": "error"})
        c.send_raw(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(8, 300))))
        try:
            c.pump(lambda: c.goaway is not None, timeout=3)
        except TimeoutError:
            pass  # a frame header announcing more bytes than sent: the server waits, we leave
        c.shutdown_and_drain()
    r = sc.spdy_exec(testd.exec_url(["echo", "still serving"]))
    assert r.stdout == b"still serving\n"


def test_idle_session_outlives_http_timeout():
    """The HTTP server's idle timeout (here 1 s) is for requests, not for upgraded sessions."""
    d = TestD("--http-timeout-s", "1")
    try:
        r = sc.spdy_exec(d.exec_url(["sh", "-c", "sleep 2.5; echo still here"]))
        assert r.stdout == b"still here\n" and r.exit_code == 0
        pf_srv = socket.socket()
        pf_srv.bind(("127.0.0.1", 0))
        pf_srv.listen(1)
        pf = sc.PortForward(d.cmd(op="portforward", id="pod1"))
        time.sleep(2.5)  # idle session
        e, data = pf.open(pf_srv.getsockname()[1])
        conn, _ = pf_srv.accept()
        pf.c.send_data(data, b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
        pf_srv.close()
        pf.close()
    finally:
        d.stop()
