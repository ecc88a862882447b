"""ImageService against a real registry (Debian's docker-registry on 127.0.0.1, see registry.py):
pulls of OCI and Docker schema-2 images, indexes, zstd layers, whiteouts, shared layers, status,
list, remove, fs info, restarts, auth (basic, bearer), concurrent pulls, and bad input: tampered
or truncated blobs, oversized manifests, unknown media types, escaping layers, registry down,
missing credentials, a pull killed mid-layer. After each, the store is walked and verified."""
import json
import os
import stat
import tempfile
import threading
import time

import grpc
import pytest

import registry as R
from conftest import Daemon, remove_tree


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="vgpu-img-", dir="/tmp")
    yield d
    remove_tree(d)


@pytest.fixture(scope="module")
def reg(workdir):
    r = R.Registry(workdir)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def busybox(reg):
    return reg.push_image("test/busybox", "1", [R.busybox_layer()],
                          config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "User": "65534"})


def pull(daemon, ref, auth=None, timeout=60):
    pb = daemon.pb
    return daemon.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=auth),
                                  timeout=timeout).image_ref


def status(daemon, ref, verbose=False):
    pb = daemon.pb
    return daemon.image.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=verbose),
                                    timeout=10)


def remove(daemon, ref):
    pb = daemon.pb
    daemon.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=30)


def list_images(daemon, filter_ref=None):
    pb = daemon.pb
    req = pb.ListImagesRequest()
    if filter_ref:
        req.filter.image.image = filter_ref
    return list(daemon.image.ListImages(req, timeout=10).images)


def pull_error(daemon, ref, auth=None):
    with pytest.raises(grpc.RpcError) as e:
        pull(daemon, ref, auth=auth)
    return e.value


def layer_dirs(daemon):
    return sorted(os.listdir(os.path.join(daemon.state_dir, "images", "layers")))


# ---- pulls ----

def test_pull_status_list(daemon, reg, busybox):
    ref = "%s/test/busybox:1" % reg.host
    t0 = time.time()
    image_id = pull(daemon, ref)
    assert image_id == busybox.id
    cold = time.time() - t0
    t0 = time.time()
    assert pull(daemon, ref) == image_id
    warm = time.time() - t0
    assert warm < max(cold, 0.5)
    repo_digest = "%s/test/busybox@%s" % (reg.host, busybox.manifest_digest)
    for name in (ref, image_id, image_id.split(":")[1], repo_digest):
        img = status(daemon, name).image
        assert img.id == image_id, name
        assert list(img.repo_tags) == [ref]
        assert list(img.repo_digests) == [repo_digest]
        assert img.uid.value == 65534 and img.username == ""
        assert img.size == sum(s for _, _, s in busybox.layers) + len(json.dumps(busybox.manifest)) + \
            os.path.getsize(os.path.join(daemon.state_dir, "images/blobs/sha256", image_id.split(":")[1]))
    st = status(daemon, ref, verbose=True)
    info = json.loads(st.info["info"])
    assert info["imageSpec"]["config"]["Cmd"] == ["/bin/sh"]
    assert info["manifestDigest"] == busybox.manifest_digest
    assert not status(daemon, "%s/test/busybox:nope" % reg.host).HasField("image")
    assert [i.id for i in list_images(daemon)] == [image_id]
    assert [i.id for i in list_images(daemon, ref)] == [image_id]
    assert list_images(daemon, "%s/test/other:1" % reg.host) == []
    # the rootfs is there, busybox included
    layer = os.path.join(daemon.state_dir, "images/layers", busybox.layers[0][0].split(":")[1])
    assert os.path.getsize(os.path.join(layer, "bin/busybox")) == os.path.getsize(R.BUSYBOX)
    assert os.readlink(os.path.join(layer, "bin/sh")) == "busybox"
    assert "pull %s" % ref in daemon.log()
    R.store_check(daemon.state_dir)


def test_pull_by_digest(daemon, reg, busybox, pb):
    ref = "%s/test/busybox@%s" % (reg.host, busybox.manifest_digest)
    spec = pb.ImageSpec(image=ref, annotations={"io.example/team": "gpu"})
    assert daemon.image.PullImage(pb.PullImageRequest(image=spec), timeout=60).image_ref == busybox.id
    img = status(daemon, ref).image
    assert list(img.repo_tags) == []
    assert list(img.repo_digests) == [ref]
    assert img.spec.image == busybox.id and dict(img.spec.annotations) == {"io.example/team": "gpu"}
    daemon.restart()
    assert dict(status(daemon, busybox.id).image.spec.annotations) == {"io.example/team": "gpu"}
    # a digest that the registry does not have
    e = pull_error(daemon, "%s/test/busybox@sha256:%s" % (reg.host, "0" * 64))
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()


def test_docker_schema2_multilayer_whiteouts(daemon, reg):
    base = R.Tar().dir("etc").file("etc/a", "a").file("etc/b", "b").dir("d").file("d/x", "x").bytes()
    mid = R.Tar().whiteout("etc/a").dir("d").opaque("d").file("d/y", "y").bytes()
    top = R.Tar().file("etc/c", "c").hardlink("etc/c2", "etc/c").symlink("abs", "/etc/c").bytes()
    img = reg.push_image("test/layers", "v1", [base, mid, top], docker=True)
    image_id = pull(daemon, "%s/test/layers:v1" % reg.host)
    assert image_id == img.id
    root = os.path.join(daemon.state_dir, "images/layers")
    mid_dir = os.path.join(root, img.layers[1][0].split(":")[1])
    st = os.lstat(os.path.join(mid_dir, "etc/a"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(mid_dir, "d"), "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(os.path.join(mid_dir, "etc/.wh.a"))
    top_dir = os.path.join(root, img.layers[2][0].split(":")[1])
    assert os.stat(os.path.join(top_dir, "etc/c")).st_ino == os.stat(os.path.join(top_dir, "etc/c2")).st_ino
    assert os.readlink(os.path.join(top_dir, "abs")) == "/etc/c"
    R.store_check(daemon.state_dir)


def test_manifest_list_resolves_linux_amd64(daemon, reg):
    amd = reg.push_image("test/multi", "amd64-only", [R.Tar().file("arch", "amd64").bytes()])
    arm = reg.push_image("test/multi", "arm64-only", [R.Tar().file("arch", "arm64").bytes()],
                         config={"Cmd": ["arm"]})
    index_digest = reg.push_index("test/multi", "latest", [(arm, "linux", "arm64"), (amd, "linux", "amd64")])
    ref = "%s/test/multi" % reg.host
    assert pull(daemon, ref) == amd.id
    img = status(daemon, ref + ":latest").image
    assert list(img.repo_digests) == ["%s/test/multi@%s" % (reg.host, index_digest)]
    # a Docker manifest list, and one without our platform
    reg.push_index("test/multi", "dockerlist", [(amd, "linux", "amd64")], docker=True)
    assert pull(daemon, ref + ":dockerlist") == amd.id
    reg.push_index("test/multi", "armonly", [(arm, "linux", "arm64")])
    e = pull_error(daemon, ref + ":armonly")
    assert e.code() == grpc.StatusCode.NOT_FOUND and "linux/amd64" in e.details(), e.details()
    R.store_check(daemon.state_dir)


def test_zstd_and_uncompressed_layers(daemon, reg):
    z = reg.push_image("test/zstd", "1", [R.Tar().file("hello", "zstd world").bytes()], compression="zstd")
    t = reg.push_image("test/plain", "1", [R.Tar().file("hello", "plain world").bytes()], compression="tar")
    assert pull(daemon, "%s/test/zstd:1" % reg.host) == z.id
    assert pull(daemon, "%s/test/plain:1" % reg.host) == t.id
    for img, text in ((z, "zstd world"), (t, "plain world")):
        p = os.path.join(daemon.state_dir, "images/layers", img.layers[0][0].split(":")[1], "hello")
        assert open(p).read() == text
    R.store_check(daemon.state_dir)


def test_shared_layers_stored_once_and_remove(daemon, reg, busybox):
    base = R.busybox_layer()
    a = reg.push_image("test/shared-a", "1", [base, R.Tar().file("a", "a").bytes()])
    b = reg.push_image("test/shared-b", "1", [base, R.Tar().file("b", "b").bytes()])
    assert a.layers[0] == b.layers[0]
    pull(daemon, "%s/test/shared-a:1" % reg.host)
    pull(daemon, "%s/test/shared-b:1" % reg.host)
    assert len(layer_dirs(daemon)) == 3
    # remove by tag: the shared layer stays, a's own goes
    remove(daemon, "%s/test/shared-a:1" % reg.host)
    dirs = layer_dirs(daemon)
    assert len(dirs) == 2 and a.layers[1][0].split(":")[1] not in dirs
    assert not status(daemon, a.id).HasField("image")
    # idempotent, by every kind of name
    remove(daemon, "%s/test/shared-a:1" % reg.host)
    remove(daemon, a.id)
    assert status(daemon, b.id).image.id == b.id
    remove(daemon, "%s/test/shared-b@%s" % (reg.host, b.manifest_digest))
    assert layer_dirs(daemon) == []
    assert list_images(daemon) == []
    assert os.listdir(os.path.join(daemon.state_dir, "images/blobs/sha256")) == []
    with pytest.raises(grpc.RpcError) as e:
        remove(daemon, "Not A Reference")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    R.store_check(daemon.state_dir)


def test_store_survives_restart(daemon, reg, busybox):
    ref = "%s/test/busybox:1" % reg.host
    pull(daemon, ref)
    daemon.restart()
    assert [i.id for i in list_images(daemon)] == [busybox.id]
    assert status(daemon, ref).image.id == busybox.id
    t0 = time.time()
    pull(daemon, ref)
    assert time.time() - t0 < 1.0
    R.store_check(daemon.state_dir)


def test_image_fs_info(daemon, reg, busybox):
    pb = daemon.pb
    before = daemon.image.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=10).image_filesystems[0]
    pull(daemon, "%s/test/busybox:1" % reg.host)
    after = daemon.image.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=10).image_filesystems[0]
    assert after.fs_id.mountpoint == os.path.join(daemon.state_dir, "images")
    assert after.used_bytes.value >= before.used_bytes.value + os.path.getsize(R.BUSYBOX)
    assert after.inodes_used.value > before.inodes_used.value
    assert after.timestamp > 0


def test_concurrent_pulls_share_one_download(daemon, reg):
    img = reg.push_image("test/concurrent", "1",
                         [R.Tar().file("f%d" % i, os.urandom(256 << 10)).bytes() for i in range(3)])
    proxy = R.AuthProxy(reg.port, require_token=False)
    proxy.throttle_bps = 4 << 20  # slow enough that the pulls overlap
    try:
        ref = "%s/test/concurrent:1" % proxy.host
        results, errors = [], []

        def worker():
            try:
                results.append(pull(daemon, ref))
            except grpc.RpcError as e:
                errors.append(e.details())
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert results == [img.id] * 4
        assert proxy.blob_requests == 4, "3 layers + 1 config, each fetched once (got %d)" % proxy.blob_requests
    finally:
        proxy.stop()
    R.store_check(daemon.state_dir)


# ---- auth ----

def test_basic_auth(daemon, workdir, pb):
    sec = R.Registry(os.path.join(workdir, "basic"), htpasswd=("alice", "s3cret"))
    try:
        img = sec.push_image("test/private", "1", [R.Tar().file("secret", "s").bytes()])
        ref = "%s/test/private:1" % sec.host
        e = pull_error(daemon, ref)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "credentials" in e.details(), e.details()
        e = pull_error(daemon, ref, auth=pb.AuthConfig(username="alice", password="wrong"))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
        assert pull(daemon, ref, auth=pb.AuthConfig(username="alice", password="s3cret")) == img.id
        remove(daemon, ref)
        import base64
        token = base64.b64encode(b"alice:s3cret").decode()
        assert pull(daemon, ref, auth=pb.AuthConfig(auth=token)) == img.id
        assert "s3cret" not in daemon.log()
    finally:
        sec.stop()
    R.store_check(daemon.state_dir)


def test_bearer_token_challenge(daemon, reg, busybox, pb):
    proxy = R.AuthProxy(reg.port, user="bob", password="hunter2")
    try:
        ref = "%s/test/busybox:1" % proxy.host
        e = pull_error(daemon, ref)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
        assert pull(daemon, ref, auth=pb.AuthConfig(username="bob", password="hunter2")) == busybox.id
        assert proxy.token_requests >= 2
        # a registry token from kubelet is used as is: no token request
        remove(daemon, busybox.id)
        before = proxy.token_requests
        assert pull(daemon, ref, auth=pb.AuthConfig(registry_token=proxy.token)) == busybox.id
        assert proxy.token_requests == before
        # blobs redirected to another host (a CDN)
        remove(daemon, busybox.id)
        proxy.redirect_blobs = True
        proxy.blob_requests = 0
        assert pull(daemon, ref, auth=pb.AuthConfig(username="bob", password="hunter2")) == busybox.id
        assert proxy.blob_requests == 2
    finally:
        proxy.stop()
    # anonymous token (public repo on a token-auth registry, like Docker Hub)
    anon = R.AuthProxy(reg.port)
    try:
        assert pull(daemon, "%s/test/busybox:1" % anon.host) == busybox.id
        assert anon.token_requests == 1
    finally:
        anon.stop()
    R.store_check(daemon.state_dir)


# ---- bad input ----

def test_wrong_digest_served(daemon, workdir):
    r = R.Registry(os.path.join(workdir, "tamper"))
    try:
        img = r.push_image("test/tampered", "1", [R.Tar().file("f", os.urandom(4096)).bytes()])
        r.corrupt_blob(img.layers[0][0])
        e = pull_error(daemon, "%s/test/tampered:1" % r.host)
        assert "digest mismatch" in e.details(), e.details()
        assert img.layers[0][0] in e.details()
        assert list_images(daemon) == []
        R.store_check(daemon.state_dir)
        # a tampered config too
        img2 = r.push_image("test/tampered", "2", [R.Tar().file("g", "g").bytes()])
        r.corrupt_blob(img2.config_digest)
        e = pull_error(daemon, "%s/test/tampered:2" % r.host)
        assert "digest mismatch" in e.details(), e.details()
    finally:
        r.stop()
    assert list_images(daemon) == []
    R.store_check(daemon.state_dir)


def test_truncated_blob(daemon, workdir):
    r = R.Registry(os.path.join(workdir, "trunc"))
    try:
        img = r.push_image("test/trunc", "1", [R.Tar().file("f", os.urandom(65536)).bytes()])
        r.truncate_blob(img.layers[0][0], 1000)
        e = pull_error(daemon, "%s/test/trunc:1" % r.host)
        assert img.layers[0][0] in e.details() and ("size mismatch" in e.details() or "transfer" in e.details()), \
            e.details()
    finally:
        r.stop()
    assert list_images(daemon) == []
    R.store_check(daemon.state_dir)


def test_manifest_too_large(daemon, reg):
    # the registry refuses to store a manifest over 4 MiB, so a proxy serves it
    img = reg.push_image("test/big", "1", [R.Tar().file("f", "f").bytes()])
    big = dict(img.manifest)
    big["annotations"] = {"padding": "x" * (5 << 20)}
    proxy = R.AuthProxy(reg.port, require_token=False)
    proxy.overrides["/v2/test/big/manifests/1"] = (R.MT_OCI_MANIFEST, json.dumps(big).encode())
    try:
        e = pull_error(daemon, "%s/test/big:1" % proxy.host)
        assert "too large" in e.details(), e.details()
        assert pull(daemon, "%s/test/big@%s" % (proxy.host, img.manifest_digest)) == img.id
    finally:
        proxy.stop()
    R.store_check(daemon.state_dir)


def test_unknown_media_type(daemon, reg):
    reg.push_image("test/unknown", "1", [R.Tar().file("f", "f").bytes()],
                   layer_media_type="application/vnd.example.mystery")
    e = pull_error(daemon, "%s/test/unknown:1" % reg.host)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "unknown media type" in e.details() and "vnd.example.mystery" in e.details()
    assert list_images(daemon) == []
    R.store_check(daemon.state_dir)


@pytest.mark.parametrize("layer", [
    R.Tar().file("ok", "1").file("../escaped-dotdot", "x"),
    R.Tar().symlink("link", "/tmp").file("link/escaped-abs-symlink", "x"),
    R.Tar().symlink("up", "..").file("up/escaped-rel-symlink", "x"),
    R.Tar().hardlink("h", "../../../../etc/hostname"),
], ids=["dotdot", "abs-symlink", "rel-symlink", "hardlink"])
def test_escaping_layer_refused(daemon, reg, layer):
    tag = str(abs(hash(daemon.workdir)) % 100000)
    reg.push_image("test/escape", tag, [layer.bytes()])
    e = pull_error(daemon, "%s/test/escape:%s" % (reg.host, tag))
    assert "refused" in e.details() or "leaves the layer" in e.details(), e.details()
    for name in ("escaped-dotdot", "escaped-abs-symlink", "escaped-rel-symlink"):
        for d in ("/tmp", os.path.join(daemon.state_dir, "images"), os.path.join(daemon.state_dir, "images/layers"),
                  os.path.join(daemon.state_dir, "images/tmp")):
            assert not os.path.exists(os.path.join(d, name))
    assert list_images(daemon) == []
    assert layer_dirs(daemon) == []
    R.store_check(daemon.state_dir)


def test_registry_down_and_bad_refs(daemon, busybox):
    e = pull_error(daemon, "127.0.0.1:%d/test/busybox:1" % R.free_port())
    assert e.code() == grpc.StatusCode.UNAVAILABLE, e.details()
    e = pull_error(daemon, "127.0.0.1:1/UPPER/case")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    e = pull_error(daemon, "")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()


def test_missing_tag_not_found(daemon, reg, busybox):
    e = pull_error(daemon, "%s/test/busybox:does-not-exist" % reg.host)
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()


def test_plain_http_only_when_configured(reg, busybox, workdir):
    d = Daemon(tempfile.mkdtemp(prefix="vgpu-it-", dir="/tmp"), {"images": {"insecure_registries": []}})
    try:
        e = pull_error(d, "%s/test/busybox:1" % reg.host)
        assert "https://" in e.details(), e.details()
        assert list_images(d) == []
    finally:
        d.terminate()
        remove_tree(d.workdir)


def test_pull_killed_mid_layer_then_retried(daemon, reg):
    img = reg.push_image("test/slow", "1", [R.busybox_layer(), R.Tar().file("big", os.urandom(3 << 20)).bytes()])
    proxy = R.AuthProxy(reg.port, require_token=False)
    proxy.throttle_bps = 1 << 20
    tmp = os.path.join(daemon.state_dir, "images/tmp")
    ref = "%s/test/slow:1" % proxy.host
    try:
        t = threading.Thread(target=lambda: pytest.raises(grpc.RpcError, pull, daemon, ref), daemon=True)
        t.start()
        deadline = time.time() + 20
        while time.time() < deadline:  # wait until a layer is half there
            sizes = [os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp) if f.startswith("blob")]
            if any(s > (1 << 20) for s in sizes):
                break
            time.sleep(0.05)
        else:
            pytest.fail("no partial download seen")
        daemon.restart()  # SIGKILL mid-layer
        t.join(10)
        R.store_check(daemon.state_dir)
        assert list_images(daemon) == []
        assert os.listdir(tmp) == [], "the restart cleans up partial downloads"
        proxy.throttle_bps = 0
        assert pull(daemon, ref) == img.id
    finally:
        proxy.stop()
    assert [r["id"] for r in R.store_check(daemon.state_dir)] == [img.id]
