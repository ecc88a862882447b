"""A small, independent client for vgpu-cri's streaming server, written from the protocol
descriptions (not from the server code): SPDY/3.1 over an HTTP/1.1 Upgrade (own framing, zlib with
the SPDY/3 dictionary), WebSocket through python3-websocket, and the Kubernetes remote-command
(exec/attach) and port-forward protocols on top. Used by test_streaming*.py and
bench_streaming.py."""
import json
import socket
import struct
import threading
import time
import urllib.parse
import zlib

import websocket  # python3-websocket (websocket-client)

_WORDS = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
          "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
          "content-base", "content-encoding", "content-language", "content-length", "content-location",
          "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
          "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
          "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
          "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
          "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
          "public", "set-cookie", "keep-alive", "origin"]
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
SPDY_DICT = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
assert len(SPDY_DICT) == 1423

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FIN = 1


class HTTPError(Exception):
    def __init__(self, status, body, headers):
        super().__init__("HTTP %d: %s" % (status, body.strip()))
        self.status, self.body, self.headers = status, body, headers


class Stream:
    def __init__(self, sid, headers):
        self.id, self.headers = sid, headers
        self.data = bytearray()
        self.fin = False      # the server half-closed
        self.replied = False
        self.reset = None     # RST_STREAM status


class SpdyConn:
    """Client side of a SPDY/3.1 session over a raw socket (HTTP Upgrade) or a WebSocket tunnel."""

    def __init__(self, url, protocols, method="POST", tunnel=False, timeout=30):
        self.timeout = timeout
        self.buf = bytearray()
        self.streams = {}
        self.next_id = 1
        self.goaway = None
        self.closed = False
        self.deflate = zlib.compressobj(zdict=SPDY_DICT)
        self.inflate = zlib.decompressobj(zdict=SPDY_DICT)
        u = urllib.parse.urlparse(url)
        self.ws = None
        if tunnel:
            self.ws = websocket.create_connection(url.replace("http://", "ws://", 1), subprotocols=protocols,
                                                  timeout=timeout)
            self.protocol = self.ws.getheaders().get("sec-websocket-protocol")
            return
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = ["%s %s HTTP/1.1" % (method, u.path), "Host: %s" % u.netloc, "Connection: Upgrade",
               "Upgrade: SPDY/3.1"]
        req += ["X-Stream-Protocol-Version: %s" % p for p in protocols]
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the HTTP handshake")
            head += chunk
        head, rest = bytes(head).split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        if status != 101:
            body = rest
            want = int(headers.get("content-length", "0"))
            while len(body) < want:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                body += chunk
            self.sock.close()
            raise HTTPError(status, body.decode(errors="replace"), headers)
        self.protocol = headers.get("x-stream-protocol-version")
        self.buf += rest

    # -- transport --
    def _send(self, data):
        if self.ws:
            self.ws.send_binary(bytes(data))
        else:
            self.sock.sendall(data)

    def _recv(self):
        if self.ws:
            try:
                op, data = self.ws.recv_data(control_frame=False)
            except websocket.WebSocketConnectionClosedException:
                return b""
            if op == websocket.ABNF.OPCODE_CLOSE:
                return b""
            return data
        return self.sock.recv(65536)

    def send_raw(self, data):
        self._send(data)

    def close(self):
        if self.ws:
            self.ws.close()
            self.ws.shutdown()
        else:
            self.sock.close()

    def shutdown_and_drain(self):
        """Close abruptly (for 'client vanished')."""
        if self.ws:
            self.ws.sock.close()
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    # -- frames --
    def _header_block(self, headers):
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def control(self, ftype, payload, flags=0):
        self._send(struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload)) + payload)

    def create_stream(self, headers, fin=False):
        sid = self.next_id
        self.next_id += 2
        self.streams[sid] = Stream(sid, headers)
        self.control(SYN_STREAM, struct.pack(">IIBB", sid, 0, 0, 0) + self._header_block(headers), FIN if fin else 0)
        return sid

    def send_data(self, sid, data, fin=False):
        self._send(struct.pack(">II", sid, ((FIN if fin else 0) << 24) | len(data)) + data)

    def ping(self, pid):
        self.control(PING, struct.pack(">I", pid))

    def _parse(self):
        while len(self.buf) >= 8:
            w0, w1 = struct.unpack(">II", self.buf[:8])
            length = w1 & 0xffffff
            if len(self.buf) < 8 + length:
                return
            flags = w1 >> 24
            payload = bytes(self.buf[8:8 + length])
            del self.buf[:8 + length]
            if w0 & 0x80000000:
                ftype = w0 & 0xffff
                if ftype == SYN_REPLY:
                    sid = struct.unpack(">I", payload[:4])[0] & 0x7fffffff
                    self.inflate.decompress(payload[4:])
                    if sid in self.streams:
                        self.streams[sid].replied = True
                        if flags & FIN:
                            self.streams[sid].fin = True
                elif ftype == RST_STREAM:
                    sid, status = struct.unpack(">II", payload)
                    if sid in self.streams:
                        self.streams[sid].reset = status
                elif ftype == GOAWAY:
                    self.goaway = struct.unpack(">II", payload)[1]
                elif ftype == PING:
                    self.last_ping = struct.unpack(">I", payload)[0]
            else:
                st = self.streams.get(w0 & 0x7fffffff)
                if st:
                    st.data += payload
                    if flags & FIN:
                        st.fin = True

    def pump(self, until, timeout=None):
        """Read frames until until() is true or the connection closes; returns until()."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not until():
            if self.closed:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("streaming: no progress")
            try:
                chunk = self._recv()
            except (ConnectionResetError, socket.timeout):
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
            self._parse()
        return until()


RC_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]


class ExecResult:
    def __init__(self, stdout, stderr, error, protocol):
        self.stdout, self.stderr, self.error, self.protocol = stdout, stderr, error, protocol

    @property
    def status(self):
        return json.loads(self.error) if self.error else None

    @property
    def exit_code(self):
        """From the v4/v5 status, as client-go decodes it."""
        st = self.status
        if st is None or st.get("status") == "Success":
            return 0
        if st.get("reason") == "NonZeroExitCode":
            for c in st["details"]["causes"]:
                if c["reason"] == "ExitCode":
                    return int(c["message"])
        raise RuntimeError("exec failed: %s" % st.get("message"))


def spdy_exec(url, stdin=None, stdout=True, stderr=True, tty=False, resize=None, protocols=None,
              stdin_chunks=None, timeout=30):
    """Run an exec/attach session the way client-go does; returns ExecResult."""
    c = SpdyConn(url, protocols or RC_PROTOCOLS, timeout=timeout)
    ids = {"error": c.create_stream({"streamType": "error"})}
    if stdin is not None or stdin_chunks is not None:
        ids["stdin"] = c.create_stream({"streamType": "stdin"})
    if stdout:
        ids["stdout"] = c.create_stream({"streamType": "stdout"})
    if stderr:
        ids["stderr"] = c.create_stream({"streamType": "stderr"})
    if tty and c.protocol not in ("v2.channel.k8s.io", "channel.k8s.io", None):
        ids["resize"] = c.create_stream({"streamType": "resize"})
    if resize:
        for w, h in resize:
            c.send_data(ids["resize"], json.dumps({"Width": w, "Height": h}).encode())
    writer = None
    if "stdin" in ids:
        def write_stdin():  # concurrently with reading, as client-go does
            for chunk in (stdin_chunks or [stdin]):
                if isinstance(chunk, float):
                    time.sleep(chunk)
                    continue
                for i in range(0, len(chunk), 32768):
                    c.send_data(ids["stdin"], chunk[i:i + 32768])
            if not tty:
                c.send_data(ids["stdin"], b"", fin=True)
        writer = threading.Thread(target=write_stdin, daemon=True)
        writer.start()
    outs = [ids[k] for k in ("error", "stdout", "stderr") if k in ids]
    c.pump(lambda: all(c.streams[i].fin or c.streams[i].reset is not None for i in outs), timeout)
    if writer:
        writer.join(timeout)
    get = lambda k: bytes(c.streams[ids[k]].data) if k in ids else b""  # noqa: E731
    res = ExecResult(get("stdout"), get("stderr"), get("error"), c.protocol)
    c.close()
    return res


def ws_exec(url, stdin=None, protocols=("v5.channel.k8s.io",), resize=None, close_stdin=True, timeout=30):
    """Exec over WebSocket (channel byte prefix; v5 close signal for stdin EOF)."""
    ws = websocket.create_connection(url.replace("http://", "ws://", 1), subprotocols=list(protocols),
                                     timeout=timeout)
    proto = ws.getheaders().get("sec-websocket-protocol")
    if resize:
        for w, h in resize:
            ws.send_binary(b"\x04" + json.dumps({"Width": w, "Height": h}).encode())
    if stdin:
        ws.send_binary(b"\x00" + stdin)
    if close_stdin and proto == "v5.channel.k8s.io":
        ws.send_binary(b"\xff\x00")
    out = {1: bytearray(), 2: bytearray(), 3: bytearray()}
    while True:
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if op in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) and data:
            out.setdefault(data[0], bytearray()).extend(data[1:])
    ws.close()
    ws.shutdown()  # websocket-client 1.2 leaves the socket open after a server-initiated close
    return ExecResult(bytes(out[1]), bytes(out[2]), bytes(out[3]), proto)


class PortForward:
    """client-go's port-forward: per connection an error and a data stream, same port/requestID."""

    def __init__(self, url, tunnel=False, timeout=30):
        protos = ["SPDY/3.1+portforward.k8s.io"] if tunnel else ["portforward.k8s.io"]
        self.c = SpdyConn(url, protos, tunnel=tunnel, timeout=timeout)
        self.request_id = 0

    def open(self, port):
        rid = str(self.request_id)
        self.request_id += 1
        h = {"streamType": "error", "port": str(port), "requestID": rid}
        err = self.c.create_stream(h)
        h = dict(h, streamType="data")
        data = self.c.create_stream(h)
        return err, data

    def roundtrip(self, port, payload, expect_len=None):
        """Send payload, half-close, read until the server half-closes; returns (data, error)."""
        err, data = self.open(port)
        for i in range(0, len(payload), 32768):
            self.c.send_data(data, payload[i:i + 32768])
        self.c.send_data(data, b"", fin=True)
        s = self.c.streams
        self.c.pump(lambda: (s[data].fin or s[data].reset is not None) and (s[err].fin or s[err].reset is not None))
        return bytes(s[data].data), bytes(s[err].data)

    def close(self):
        self.c.close()


class RemoteCommand:
    """An interactive exec/attach session, for tests that talk to a process while it runs: over
    SPDY (client-go's streams, RC_PROTOCOLS) or WebSocket (v5 channel bytes). send(), resize(),
    close_stdin(), read_until(pred), wait_end(); detach with close() or vanish() (abrupt)."""

    def __init__(self, url, transport="spdy", stdin=False, stdout=True, stderr=True, tty=False, timeout=30):
        self.spdy = transport == "spdy"
        self.timeout = timeout
        self.ended = False
        self._ws_out = {1: bytearray(), 2: bytearray(), 3: bytearray()}
        if self.spdy:
            self.c = SpdyConn(url, RC_PROTOCOLS, timeout=timeout)
            self.ids = {"error": self.c.create_stream({"streamType": "error"})}
            for name, want in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr and not tty),
                               ("resize", tty)):
                if want:
                    self.ids[name] = self.c.create_stream({"streamType": name})
        else:
            self.ws = websocket.create_connection(url.replace("http://", "ws://", 1),
                                                  subprotocols=["v5.channel.k8s.io"], timeout=timeout)
            self.protocol = self.ws.getheaders().get("sec-websocket-protocol")

    def buffer(self, ch):
        """What arrived on channel ch (1 stdout, 2 stderr, 3 error) so far, without a copy."""
        name = {1: "stdout", 2: "stderr", 3: "error"}[ch]
        if self.spdy:
            return self.c.streams[self.ids[name]].data if name in self.ids else bytearray()
        return self._ws_out.setdefault(ch, bytearray())

    def _data(self, name, ch):
        return bytes(self.buffer(ch))

    @property
    def stdout(self):
        return self._data("stdout", 1)

    @property
    def stderr(self):
        return self._data("stderr", 2)

    @property
    def error(self):
        return self._data("error", 3)

    def send(self, data):
        if self.spdy:
            self.c.send_data(self.ids["stdin"], data)
        else:
            self.ws.send_binary(b"\x00" + data)

    def resize(self, width, height):
        msg = json.dumps({"Width": width, "Height": height}).encode()
        if self.spdy:
            self.c.send_data(self.ids["resize"], msg)
        else:
            self.ws.send_binary(b"\x04" + msg)

    def close_stdin(self):
        if self.spdy:
            self.c.send_data(self.ids["stdin"], b"", fin=True)
        else:
            self.ws.send_binary(b"\xff\x00")

    def _spdy_done(self):
        err = self.c.streams[self.ids["error"]]
        return err.fin or err.reset is not None

    def read_until(self, pred, timeout=15):
        """Read until pred(self) holds (returns True), the server ends the session or timeout
        passes (returns pred(self))."""
        deadline = time.monotonic() + timeout
        while self.spdy and not pred(self) and not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.c.sock.settimeout(left)
            try:
                chunk = self.c.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.ended = True
                break
            self.c.buf += chunk
            self.c._parse()
            self.ended = self._spdy_done()
        while not self.spdy and not pred(self) and not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.ws.settimeout(left)
            try:
                op, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                self.ended = True
                break
            if op == websocket.ABNF.OPCODE_CLOSE:
                self.ended = True
            elif op in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) and data:
                self._ws_out.setdefault(data[0], bytearray()).extend(data[1:])
        return pred(self)

    def wait_end(self, timeout=15):
        """Read until the server ends the session; returns the v4/v5 status (dict) or None."""
        self.read_until(lambda s: s.ended, timeout)
        return json.loads(self.error) if self.error else None

    def close(self):
        if self.spdy:
            self.c.close()
        else:
            self.ws.close()
            self.ws.shutdown()

    def vanish(self):
        """Go away without a goodbye (RST, no WebSocket close)."""
        if self.spdy:
            self.c.shutdown_and_drain()
        else:
            self.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.ws.sock.close()
