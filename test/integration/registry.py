"""A real OCI registry for image tests: Debian's docker-registry on 127.0.0.1:<free port> with a
temp storage dir, images built here (tar layers, gzip or zstd, configs, manifests, indexes) and
pushed with the distribution API, storage tampering helpers, and an auth proxy that puts a bearer
token flow (or throttling) in front of it.

    reg = Registry(tmpdir)                 # or Registry(tmpdir, htpasswd=("user", "pw"))
    img = reg.push_image("test/busybox", "1", [busybox_layer()], config={"Cmd": ["sh"]})
    reg.stop()
"""
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import warnings

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
BUSYBOX = "/bin/busybox"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_port(port, timeout=15, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("registry exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


# ---- layers ----

class Tar:
    """Build a layer tar in memory: add files, dirs, symlinks, hard links, whiteouts."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, type_, mode, size=0, **kw):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.size = size
        ti.mtime = 1700000000
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    def dir(self, name, mode=0o755):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))
        return self

    def file(self, name, data=b"", mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        return self

    def symlink(self, name, target):
        self.tar.addfile(self._info(name, tarfile.SYMTYPE, 0o777, linkname=target))
        return self

    def hardlink(self, name, target):
        self.tar.addfile(self._info(name, tarfile.LNKTYPE, 0o644, linkname=target))
        return self

    def whiteout(self, path):
        d, b = os.path.split(path)
        return self.file(os.path.join(d, ".wh." + b))

    def opaque(self, dirpath):
        return self.file(os.path.join(dirpath, ".wh..wh..opq"))

    def host_file(self, name, src, mode=None):
        st = os.stat(src)
        with open(src, "rb") as f:
            data = f.read()
        return self.file(name, data, mode if mode is not None else st.st_mode & 0o7777)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def compress(tar_bytes, kind):
    if kind in ("gzip", "docker"):
        return gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    if kind == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=tar_bytes, stdout=subprocess.PIPE,
                              check=True).stdout
    return tar_bytes


def busybox_layer():
    """A minimal rootfs: /bin/busybox (static) with sh, ls, cat, echo, true links; /etc/passwd."""
    t = Tar().dir("bin").dir("etc").dir("tmp", 0o1777)
    t.host_file("bin/busybox", BUSYBOX, 0o755)
    for app in ("sh", "ls", "cat", "echo", "true", "sleep", "id", "env"):
        t.symlink("bin/" + app, "busybox")
    t.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    t.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    return t.bytes()


# ---- the registry ----

class Image:
    def __init__(self, name, tag, manifest_digest, config_digest, manifest, layers, index_digest=None):
        self.name = name
        self.tag = tag
        self.manifest_digest = manifest_digest
        self.config_digest = config_digest
        self.manifest = manifest
        self.layers = layers              # [(digest, media_type, size)]
        self.index_digest = index_digest  # the digest the tag resolves to, when it is an index

    @property
    def id(self):
        return self.config_digest

    @property
    def repo_digest(self):
        return self.index_digest or self.manifest_digest


class Registry:
    def __init__(self, workdir, htpasswd=None):
        self.workdir = workdir
        self.storage = os.path.join(workdir, "registry-storage")
        os.makedirs(self.storage, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.auth = htpasswd
        cfg = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % self.storage,
            "  delete:",
            "    enabled: true",
            "http:",
            "  addr: 127.0.0.1:%d" % self.port,
        ]
        if htpasswd:
            user, pw = htpasswd
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hashed = crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # cost 4: fast tests
            path = os.path.join(workdir, "htpasswd")
            with open(path, "w") as f:
                f.write("%s:%s\n" % (user, hashed))
            cfg += ["auth:", "  htpasswd:", "    realm: test-realm", "    path: %s" % path]
        self.config_path = os.path.join(workdir, "registry-%d.yml" % self.port)
        with open(self.config_path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log_path = os.path.join(workdir, "registry-%d.log" % self.port)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    # -- HTTP --
    def _request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.auth:
            import base64
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % self.auth).encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def push_blob(self, name, data):
        digest = sha256(data)
        resp, _ = self._request("HEAD", "/v2/%s/blobs/%s" % (name, digest))
        if resp.status == 200:
            return digest
        resp, body = self._request("POST", "/v2/%s/blobs/uploads/" % name)
        assert resp.status == 202, (resp.status, body)
        loc = urllib.parse.urlsplit(resp.getheader("Location"))
        q = loc.query + ("&" if loc.query else "") + "digest=" + digest
        resp, body = self._request("PUT", loc.path + "?" + q, body=data,
                                   headers={"Content-Type": "application/octet-stream"})
        assert resp.status == 201, (resp.status, body)
        return digest

    def push_manifest(self, name, ref, manifest, media_type):
        data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        resp, body = self._request("PUT", "/v2/%s/manifests/%s" % (name, ref), body=data,
                                   headers={"Content-Type": media_type})
        assert resp.status == 201, (resp.status, body)
        return sha256(data)

    def push_image(self, name, tag, layers, config=None, compression="gzip", docker=False,
                   layer_media_type=None, push_tag=True):
        """layers: list of uncompressed tar bytes (bottom first). Returns an Image."""
        descs, diff_ids = [], []
        for tar in layers:
            blob = compress(tar, "docker" if docker else compression)
            d = self.push_blob(name, blob)
            mt = layer_media_type or (MT_LAYER["docker"] if docker else MT_LAYER[compression])
            descs.append({"mediaType": mt, "digest": d, "size": len(blob)})
            diff_ids.append(sha256(tar))
        cfg = {
            "architecture": "amd64",
            "os": "linux",
            "config": config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "vgpu-cri test"} for _ in layers],
        }
        cfg_bytes = json.dumps(cfg).encode()
        cfg_digest = self.push_blob(name, cfg_bytes)
        mt = MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG, "digest": cfg_digest,
                       "size": len(cfg_bytes)},
            "layers": descs,
        }
        data = json.dumps(manifest).encode()
        md = self.push_manifest(name, tag if push_tag else sha256(data), data, mt)
        return Image(name, tag, md, cfg_digest, manifest, [(d["digest"], d["mediaType"], d["size"]) for d in descs])

    def push_index(self, name, tag, entries, docker=False):
        """entries: [(Image, os, arch)]; pushes an index naming them under tag."""
        mt = MT_DOCKER_LIST if docker else MT_OCI_INDEX
        manifests = []
        for img, os_, arch in entries:
            data = json.dumps(img.manifest).encode()
            manifests.append({"mediaType": img.manifest["mediaType"], "digest": sha256(data), "size": len(data),
                              "platform": {"os": os_, "architecture": arch}})
        index = {"schemaVersion": 2, "mediaType": mt, "manifests": manifests}
        return self.push_manifest(name, tag, index, mt)

    # -- storage tampering --
    def blob_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")

    def corrupt_blob(self, digest):
        """Same size, different bytes: the registry serves it, only a digest check notices."""
        p = self.blob_path(digest)
        with open(p, "r+b") as f:
            f.seek(os.path.getsize(p) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xff]))

    def truncate_blob(self, digest, keep):
        with open(self.blob_path(digest), "r+b") as f:
            f.truncate(keep)


# ---- a proxy in front of the registry: bearer tokens, throttling ----

class AuthProxy:
    """Serves /token (HTTP basic user/pw -> a token) and forwards /v2/ to the registry only with
    "Authorization: Bearer <token>"; without it, 401 with a Bearer challenge, like Docker Hub.
    throttle_bps (bytes/s) slows blob bodies down, for pulls that must still run when killed;
    overrides serves given bodies for given paths (content the registry itself refuses to hold)."""

    def __init__(self, upstream_port, user=None, password=None, require_token=True):
        self.upstream = upstream_port
        self.user, self.password = user, password
        self.require_token = require_token
        self.token = "tok-%d" % os.getpid()
        self.throttle_bps = 0
        self.overrides = {}  # path -> (content type, body): served instead of the registry's answer
        self.redirect_blobs = False  # answer blob GETs with a 307 to the registry itself
        self.token_requests = 0
        self.blob_requests = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/token"):
                    return self.token_endpoint()
                if proxy.require_token and self.headers.get("Authorization") != "Bearer " + proxy.token:
                    q = urllib.parse.urlsplit(self.path).path.split("/")
                    repo = "/".join(q[2:-2]) if len(q) > 4 else ""
                    chal = 'Bearer realm="http://127.0.0.1:%d/token",service="test-registry",scope="repository:%s:pull"' % (
                        proxy.port, repo)
                    return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                      {"WWW-Authenticate": chal, "Content-Type": "application/json"})
                if proxy.redirect_blobs and "/blobs/" in self.path:
                    # like Docker Hub sending blobs to its CDN: another host, no auth there
                    proxy.blob_requests += 1
                    return self._send(307, b"", {"Location": "http://127.0.0.1:%d%s" % (proxy.upstream, self.path)})
                if self.path in proxy.overrides:
                    ct, body = proxy.overrides[self.path]
                    return self._send(200, body, {"Content-Type": ct})
                self.forward()

            do_HEAD = do_GET

            def token_endpoint(self):
                proxy.token_requests += 1
                import base64
                want = "Basic " + base64.b64encode(("%s:%s" % (proxy.user, proxy.password)).encode()).decode()
                if proxy.user and self.headers.get("Authorization") != want:
                    return self._send(401, b'{"details":"bad credentials"}')
                self._send(200, json.dumps({"token": proxy.token}).encode(), {"Content-Type": "application/json"})

            def forward(self):
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                conn.request(self.command, self.path, headers=hdrs)
                resp = conn.getresponse()
                is_blob = "/blobs/" in self.path
                if is_blob:
                    proxy.blob_requests += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                        self.send_header(k, v)
                self.end_headers()
                try:
                    while True:
                        chunk = resp.read(16384 if proxy.throttle_bps and is_blob else 1 << 20)
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        if proxy.throttle_bps and is_blob:
                            self.wfile.flush()
                            time.sleep(len(chunk) / proxy.throttle_bps)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                conn.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def store_check(state_dir):
    """Walk the daemon's image store and verify it: every blob's digest, every record's content
    present, no leftovers in tmp/. Returns the list of records."""
    root = os.path.join(state_dir, "images")
    blobs = os.path.join(root, "blobs", "sha256")
    for name in os.listdir(blobs):
        assert ".tmp." not in name, "temp file left in blobs/: " + name
        with open(os.path.join(blobs, name), "rb") as f:
            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        assert h.hexdigest() == name, "blob %s has digest %s" % (name, h.hexdigest())
    records = []
    rdir = os.path.join(root, "records")
    for name in os.listdir(rdir):
        assert name.endswith(".json") and ".tmp." not in name, "stray file in records/: " + name
        with open(os.path.join(rdir, name)) as f:
            rec = json.load(f)
        assert rec["id"].split(":")[1] + ".json" == name
        assert os.path.exists(os.path.join(blobs, rec["config_digest"].split(":")[1])), "config of %s missing" % name
        assert os.path.exists(os.path.join(blobs, rec["manifest_digest"].split(":")[1])), "manifest of %s missing" % name
        for layer in rec["layers"]:
            assert os.path.isdir(os.path.join(root, "layers", layer["digest"].split(":")[1])), \
                "layer %s of %s missing" % (layer["digest"], name)
        records.append(rec)
    return records
