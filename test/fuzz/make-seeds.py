#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target into test/fuzz/corpus/<target>/ (small, kept in the
repo). Run it again after changing an input format; crash inputs that the fuzzers found and that
were fixed live next to the seeds as crash-<what> and are left alone.

Usage: test/fuzz/make-seeds.py            (needs protoc and python3-protobuf for cri_rpc)
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if n.startswith("seed-"):
                os.unlink(os.path.join(d, n))


def sha(data):
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- idm_ring: a program of commands (see fuzz_idm_ring.c) ----

def idm_ring():
    t = "idm_ring"
    clear(t)
    u8 = lambda v: struct.pack("<B", v)
    u16 = lambda v: struct.pack("<H", v)
    u32 = lambda v: struct.pack("<I", v)
    u64 = lambda v: struct.pack("<Q", v)
    hdr = u8(4) + u16(512)  # 1 KiB ring, max_msg 512
    produce = lambda n, op: u8(5) + u16(n) + u8(op)
    consume = lambda n: u8(4) + u8(n)
    write(t, "produce-consume", hdr + produce(32, 3) + produce(100, 7) + consume(4) + u8(7) + u8(8))
    # fill until the ring wraps: a PAD message at the end
    write(t, "wrap", hdr + (produce(200, 3) + consume(1)) * 8 + u8(7))
    write(t, "bad-head", hdr + produce(32, 3) + u8(0) + u64(1 << 40) + consume(2))
    write(t, "head-near", hdr + u8(1) + u16(48) + u8(3) + u32(48) + u16(3) + u16(0) + u64(0) + consume(2))
    write(t, "bad-len", hdr + u8(1) + u16(64) + u8(3) + u32(0xfffffff0) + u16(3) + u16(0) + u64(0) + consume(1))
    write(t, "bad-tail", hdr + u8(6) + u64(12345) + u8(7) + produce(16, 2))
    write(t, "garbage", hdr + u8(2) + u16(0) + u8(40) + bytes(range(7, 47)) + u8(1) + u16(40) + consume(3))
    # client: begin a MEM_ALLOC request, the broker side consumes it; then a reply arrives
    reply = u8(3) + u32(32) + u16(3) + u16(1) + u64(0)
    write(t, "client", hdr + u8(10) + u8(3) + u16(0) + u8(0) + consume(1) + reply + u8(1) + u16(32) + u8(9) + u8(0))
    write(t, "ops", hdr + u8(11) + u32(19) + u8(11) + u32(0) + u8(11) + u32(31))


# ---- broker_dispatch: records (see fuzz_broker_dispatch.c) ----

OP = dict(HELLO=1, CTX_SYNC=2, MEM_ALLOC=3, MEM_FREE=4, MEM_GET_INFO=5, MEM_RANGE=6, HTOD=7, DTOH=8,
          DTOD=9, MEMSET=10, HOST_REG=11, HOST_UNREG=12, SEG_COPY=13, MODULE_LOAD=14, MODULE_UNLOAD=15,
          MODULE_GLOBAL=16, FUNC_GET_ATTR=17, FUNC_SET_ATTR=18, LAUNCH=19, STREAM_CREATE=20,
          STREAM_DESTROY=21, STREAM_QUERY=22, STREAM_SYNC=23, STREAM_WAIT_EVENT=24, EVENT_CREATE=25,
          EVENT_DESTROY=26, EVENT_RECORD=27, EVENT_QUERY=28, EVENT_SYNC=29, EVENT_ELAPSED=30)
SYNC, WRONG_SEQ, KEEP_REPLIES, MEMFD, UNSEALED, BADFLAG = 2, 4, 8, 0x10, 0x20, 0x40


def saved(i, off=0):
    """A placeholder for the i-th remembered handle/pointer (+off)."""
    return (0xfffffff0 << 32) | (off << 4) | i


def rec(op, body=b"", ctl=0):
    op = OP[op] if isinstance(op, str) else op
    return struct.pack("<BBH", op, ctl, len(body)) + body


def q(*vals):
    return b"".join(struct.pack("<Q", v) for v in vals)


def broker_dispatch():
    t = "broker_dispatch"
    clear(t)
    opts = b"\x00"
    payload = bytes(range(64))
    write(t, "memory", opts
          + rec("MEM_ALLOC", q(4096))
          + rec("HTOD", q(saved(0), 0, 64, 0) + payload, SYNC)
          + rec("DTOH", q(saved(0, 16), 0, 32))
          + rec("DTOD", q(saved(0, 1024), saved(0), 64, 0), SYNC)
          + rec("MEMSET", q(saved(0), 256, 0) + struct.pack("<II", 0xab, 4), SYNC)
          + rec("MEM_RANGE", q(saved(0, 100)))
          + rec("MEM_GET_INFO", q(0))
          + rec("MEM_FREE", q(saved(0)))
          + rec("MEM_FREE", q(saved(0))))
    image = b".version 8.0\n.entry fz_store (\n)\n.entry fz_nop\n"
    write(t, "launch", opts
          + rec("MEM_ALLOC", q(256))
          + rec("MODULE_LOAD", q(len(image)) + image)
          + rec("FUNC_GET_ATTR", q(saved(2)) + struct.pack("<ii", 0, 0))
          + rec("LAUNCH", q(saved(2), 0) + struct.pack("<8I", 1, 1, 1, 1, 1, 1, 0, 12)
                + q(saved(0, 8)) + struct.pack("<I", 7), SYNC)
          + rec("LAUNCH", q(saved(3), 0) + struct.pack("<8I", 1, 1, 1, 32, 1, 1, 0, 0))
          + rec("CTX_SYNC", q(0))
          + rec("MODULE_GLOBAL", q(saved(1)) + struct.pack("<II", 4, 0) + b"glob")
          + rec("MODULE_UNLOAD", q(saved(1))))
    write(t, "illegal-address", opts
          + rec("MODULE_LOAD", q(len(image)) + image)
          + rec("LAUNCH", q(saved(1), 0) + struct.pack("<8I", 1, 1, 1, 1, 1, 1, 0, 12) + q(0x1234) + struct.pack("<I", 1))
          + rec("CTX_SYNC", q(0)))
    write(t, "streams-events", opts
          + rec("STREAM_CREATE", struct.pack("<Ii", 0, 0))
          + rec("EVENT_CREATE", struct.pack("<II", 0, 0))
          + rec("EVENT_CREATE", struct.pack("<II", 0, 0))
          + rec("EVENT_RECORD", q(saved(0), saved(1)) + struct.pack("<II", 0, 0), SYNC)
          + rec("EVENT_RECORD", q(saved(0), saved(2)) + struct.pack("<II", 0, 0))
          + rec("STREAM_WAIT_EVENT", q(saved(0), saved(1)) + struct.pack("<II", 0, 0))
          + rec("EVENT_ELAPSED", q(saved(1), saved(2)))
          + rec("EVENT_QUERY", q(saved(1)))
          + rec("STREAM_SYNC", q(saved(0)))
          + rec("EVENT_DESTROY", q(saved(2)))
          + rec("STREAM_DESTROY", q(saved(0))))
    write(t, "host-segment", opts
          + rec("MEM_ALLOC", q(8192))
          + rec("HOST_REG", q(8192), MEMFD)
          + rec("SEG_COPY", q(saved(1), 0, saved(0), 4096, 0) + struct.pack("<II", 0, 0), SYNC)
          + rec("SEG_COPY", q(saved(1), 4096, saved(0), 4096, 0) + struct.pack("<II", 1, 0), SYNC)
          + rec("HOST_REG", q(4096), MEMFD | UNSEALED)
          + rec("HOST_UNREG", q(saved(1))))
    write(t, "protocol-errors", opts
          + rec("MEM_ALLOC", q(16), WRONG_SEQ))
    write(t, "bad-flags", opts + rec("MEM_ALLOC", q(16), BADFLAG))
    write(t, "unknown-op", opts + rec(35, q(1, 2)))
    write(t, "no-hello", b"\x01" + rec("MEM_ALLOC", q(64)))
    write(t, "quota", opts + rec("MEM_ALLOC", q(3 << 20)) + rec("MEM_ALLOC", q(3 << 20)) + rec("MEM_GET_INFO", q(0)))
    write(t, "park", opts + rec("DTOH", q(0, 0, 0), KEEP_REPLIES) * 8 + rec(38, q(1 << 30)) + rec("CTX_SYNC", q(0)))


# ---- image_ref ----

def image_ref():
    t = "image_ref"
    clear(t)
    h = "0123456789abcdef" * 4
    refs = ["busybox", "docker.io/library/busybox:1.36", "quay.io/org/app:v1.2.3-rc_1",
            "127.0.0.1:5000/a/b@sha256:" + h, "localhost/x:tag@sha256:" + h, "index.docker.io/nginx",
            "registry.example.com:443/team/sub/repo", "UPPER/case", "sha256:" + h, "a//b", "x:"]
    for i, r in enumerate(refs):
        write(t, "ref-%d" % i, b"\x00" + r.encode())
    chall = ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
             'scope="repository:library/busybox:pull"', 'Basic realm="registry"',
             'bearer realm="http://127.0.0.1/t", error="invalid_token", scope="a\\"b"',
             'Negotiate, Basic realm=x']
    for i, c in enumerate(chall):
        write(t, "challenge-%d" % i, b"\x01" + c.encode())
    write(t, "host-0", b"\x02registry.local:5000\nregistry.local:5000")
    write(t, "host-1", b"\x02myhost\nmyhost:8080")


# ---- manifest: documents of a pull and of the store ----

def manifest():
    t = "manifest"
    clear(t)
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin", "A=b"],
                      "WorkingDir": "/srv", "User": "1000:1000"},
           "rootfs": {"type": "layers", "diff_ids": []}}
    cfg_text = json.dumps(cfg)
    layer = lambda d, mt: {"mediaType": mt, "digest": sha(d), "size": len(d)}
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg_text),
                      "size": len(cfg_text)},
           "layers": [layer("l1", "application/vnd.oci.image.layer.v1.tar+gzip"),
                      layer("l2", "application/vnd.oci.image.layer.v1.tar+zstd"),
                      layer("l3", "application/vnd.docker.image.rootfs.diff.tar.gzip")]}
    write(t, "oci-manifest", b"\x00\x00" + json.dumps(man).encode())
    dman = dict(man, mediaType="application/vnd.docker.distribution.manifest.v2+json")
    dman["config"] = dict(man["config"], mediaType="application/vnd.docker.container.image.v1+json")
    write(t, "docker-manifest", b"\x00\x04" + json.dumps(dman).encode())
    noman = {k: v for k, v in man.items() if k != "mediaType"}
    write(t, "manifest-by-content-type", b"\x00\x00" + json.dumps(noman).encode())
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha("arm"),
                          "size": 10, "platform": {"os": "linux", "architecture": "arm64"}},
                         {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha("amd"),
                          "size": 10, "platform": {"os": "linux", "architecture": "amd64"}}]}
    write(t, "oci-index", b"\x00\x82" + json.dumps(idx).encode())
    write(t, "index-not-allowed", b"\x00\x02" + json.dumps(idx).encode())
    lst = {k: v for k, v in idx.items() if k != "mediaType"}
    write(t, "docker-list", b"\x00\x83" + json.dumps(lst).encode())
    write(t, "config", b"\x01\x00" + cfg_text.encode())
    write(t, "config-odd", b"\x01\x00" + b'{"config":{"Cmd":"sh","Env":[1,"A=b",null],"User":7}}')
    record = {"schema": 1, "id": sha(cfg_text), "repo_tags": ["docker.io/library/busybox:latest"],
              "repo_digests": ["docker.io/library/busybox@" + sha("m")], "manifest_digest": sha("m"),
              "config_digest": sha(cfg_text),
              "layers": [{"digest": sha("l1"), "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "size": 2}],
              "size": 1234, "user": "1000", "annotations": {"a": "b"}, "pulled_ns": 1700000000000000000}
    write(t, "record", b"\x02\x00" + json.dumps(record).encode())


# ---- layer_unpack: tar, tar+gzip, tar+zstd ----

def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o644)
            ti.linkname = e.get("link", "")
            ti.uid = e.get("uid", 0)
            ti.devmajor, ti.devminor = e.get("dev", (0, 0))
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)
    raw = buf.getvalue()
    # drop the record padding beyond the two end-of-archive blocks
    end = len(raw.rstrip(b"\0"))
    end = (end + 511) // 512 * 512 + 1024
    return raw[:end]


def layer_unpack():
    t = "layer_unpack"
    clear(t)
    D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    basic = [dict(name="etc/", type=D, mode=0o755), dict(name="etc/hosts", data=b"127.0.0.1 localhost\n"),
             dict(name="bin/", type=D), dict(name="bin/sh", data=b"#!\n", mode=0o755),
             dict(name="bin/ash", type=L, link="sh"), dict(name="bin/hard", type=H, link="bin/sh"),
             dict(name="./usr//lib/x", data=b"x", uid=1000)]
    whiteouts = [dict(name="a/", type=D), dict(name="a/.wh..wh..opq"), dict(name="a/.wh.gone"),
                 dict(name=".wh.top"), dict(name="a/.wh..wh.plnk"), dict(name="b/file", data=b"b")]
    traversal = [dict(name="../escape", data=b"no"), dict(name="ok", data=b"ok")]
    through_link = [dict(name="lnk", type=L, link="/tmp"), dict(name="lnk/evil", data=b"no")]
    hard_out = [dict(name="h", type=H, link="../outside")]
    abs_link = [dict(name="abs", type=L, link="/etc/passwd"), dict(name="abs", data=b"replaced")]
    devices = [dict(name="dev/", type=D), dict(name="dev/null", type=tarfile.CHRTYPE, dev=(1, 3)),
               dict(name="dev/fifo", type=tarfile.FIFOTYPE)]
    replace = [dict(name="d/", type=D), dict(name="d/x", data=b"1"), dict(name="d", data=b"file now"),
               dict(name="d/", type=D)]
    sets = dict(basic=basic, whiteouts=whiteouts, traversal=traversal, through_link=through_link,
                hard_out=hard_out, abs_link=abs_link, devices=devices, replace=replace)
    for name, entries in sets.items():
        raw = tar_bytes(entries)
        write(t, name + ".tar.gz", gzip.compress(raw, mtime=0))
    write(t, "basic.tar", tar_bytes(basic))
    if shutil.which("zstd"):
        raw = tar_bytes(whiteouts)
        z = subprocess.run(["zstd", "-q", "-c", "-19"], input=raw, stdout=subprocess.PIPE, check=True).stdout
        write(t, "whiteouts.tar.zst", z)
    write(t, "not-a-tar", b"hello world\n" * 4)


# ---- config ----

def config():
    t = "config"
    clear(t)
    with open(os.path.join(TOP, "deploy", "config.yaml"), "rb") as f:
        write(t, "deploy-config.yaml", f.read())
    write(t, "empty.yaml", b"")
    write(t, "small.yaml", b"log_level: debug\ngrpc:\n  workers: 4\ngpu:\n  backend: soft\n")
    write(t, "handlers.yaml", b"runtime_handlers:\n  runc:\n    type: runc\n    runtime_path: /usr/bin/runc\n"
          b"  gpu:\n    type: runc\n    gpu_memory_default: 2Gi\n    gpu_compute_default: 50\n"
          b"default_runtime_handler: gpu\n")
    write(t, "errors.yaml", b"grpc:\n  workers: -1\nunknown_key: 1\n")
    write(t, "anchors.yaml", b"images: &i\n  insecure_registries: [a, 'b:5000', \"c\"]\ncni: *i\n")
    write(t, "flow.yaml", b"{socket: /tmp/x.sock, streaming: {address: '[::1]:0'}}\n")


# ---- cri_rpc: protobuf requests (first byte: RPC index in fuzz_cri_rpc.c) ----

METHODS = ["Version", "Status", "RuntimeConfig", "UpdateRuntimeConfig", "ListPodSandbox",
           "PodSandboxStatus", "StopPodSandbox", "RemovePodSandbox", "ListContainers", "ContainerStatus",
           "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
           "UpdateContainerResources", "ReopenContainerLog", "ExecSync", "ContainerStats",
           "ListContainerStats", "PodSandboxStats", "ListPodSandboxStats", "ListMetricDescriptors",
           "ListPodSandboxMetrics", "ListImages", "ImageStatus", "RemoveImage", "ImageFsInfo"]


def cri_rpc():
    t = "cri_rpc"
    clear(t)
    tmp = tempfile.mkdtemp()
    try:
        subprocess.run(["protoc", "-I", os.path.join(TOP, "proto"), "--python_out", tmp, "cri-api.proto"],
                       check=True)
        sys.path.insert(0, tmp)
        import importlib
        pb = importlib.import_module("cri_api_pb2")
    finally:
        shutil.rmtree(tmp)

    def seed(method, msg, tag="", populated=False):
        sel = METHODS.index(method) | (0x80 if populated else 0)
        write(t, method + tag, bytes([sel]) + msg.SerializeToString())

    sid = "0123456789abcdef" * 4
    seed("Version", pb.VersionRequest(version="v1"))
    seed("Status", pb.StatusRequest(verbose=True))
    seed("RuntimeConfig", pb.RuntimeConfigRequest())
    seed("UpdateRuntimeConfig", pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.88.0.0/16,fd00::/64"))))
    seed("ListPodSandbox", pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
        id="abc", state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY), label_selector={"app": "x"})))
    seed("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True))
    seed("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id="0123"))
    seed("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    seed("ListContainers", pb.ListContainersRequest(filter=pb.ContainerFilter(
        id="a", pod_sandbox_id="b", state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING),
        label_selector={"k": "v"})))
    seed("ContainerStatus", pb.ContainerStatusRequest(container_id=sid, verbose=True))
    cc = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c", attempt=1), image=pb.ImageSpec(image="busybox"),
        command=["/bin/sh"], args=["-c", "true"], working_dir="/", envs=[pb.KeyValue(key="A", value=b"b")],
        mounts=[pb.Mount(container_path="/data", host_path="/tmp/x", readonly=True)],
        labels={"l": "v"}, annotations={"vgpu.io/gpu-memory": "1Gi"}, log_path="c.log",
        linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(cpu_shares=512,
                                                                           memory_limit_in_bytes=1 << 28)))
    seed("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=cc, sandbox_config=pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", uid="u", namespace="n"), log_directory="/tmp/logs")))
    seed("StartContainer", pb.StartContainerRequest(container_id=sid))
    seed("StopContainer", pb.StopContainerRequest(container_id=sid, timeout=3))
    seed("RemoveContainer", pb.RemoveContainerRequest(container_id=sid))
    seed("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=sid, linux=pb.LinuxContainerResources(cpu_quota=50000, cpu_period=100000)))
    seed("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=sid))
    seed("ExecSync", pb.ExecSyncRequest(container_id=sid, cmd=["ls", "/"], timeout=1))
    seed("ContainerStats", pb.ContainerStatsRequest(container_id=sid))
    seed("ListContainerStats", pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(id="a")))
    seed("PodSandboxStats", pb.PodSandboxStatsRequest(pod_sandbox_id=sid))
    seed("ListPodSandboxStats", pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(
        label_selector={"a": "b"})))
    seed("ListMetricDescriptors", pb.ListMetricDescriptorsRequest())
    seed("ListPodSandboxMetrics", pb.ListPodSandboxMetricsRequest())
    seed("ListImages", pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="busybox"))))
    seed("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="docker.io/library/busybox:latest"),
                                              verbose=True))
    seed("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="aaaa")), "-prefix")
    seed("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image="nginx:1")))
    seed("ImageFsInfo", pb.ImageFsInfoRequest())
    # the populated daemon: pod 1111...1 (NOTREADY, label app=web), container 2222...2 (EXITED)
    pod, ctr = "1" * 64, "2" * 64
    seed("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True), "-pop", True)
    seed("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id="111"), "-pop-prefix", True)
    seed("ListPodSandbox", pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
        label_selector={"app": "web"}, state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY))), "-pop", True)
    seed("ListContainers", pb.ListContainersRequest(filter=pb.ContainerFilter(
        pod_sandbox_id="1111", label_selector={"tier": "front"})), "-pop", True)
    seed("ContainerStatus", pb.ContainerStatusRequest(container_id=ctr, verbose=True), "-pop", True)
    seed("ContainerStats", pb.ContainerStatsRequest(container_id="2222"), "-pop", True)
    seed("ListContainerStats", pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(
        pod_sandbox_id=pod)), "-pop", True)
    seed("PodSandboxStats", pb.PodSandboxStatsRequest(pod_sandbox_id=pod), "-pop", True)
    seed("ListPodSandboxStats", pb.ListPodSandboxStatsRequest(), "-pop", True)
    seed("ListPodSandboxMetrics", pb.ListPodSandboxMetricsRequest(), "-pop", True)


if __name__ == "__main__":
    for fn in (idm_ring, broker_dispatch, image_ref, manifest, layer_unpack, config, cri_rpc):
        fn()
    total = 0
    for target in sorted(os.listdir(CORPUS)):
        d = os.path.join(CORPUS, target)
        files = os.listdir(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        total += size
        print("%-16s %3d files %7d bytes" % (target, len(files), size))
    print("total %d bytes" % total)
