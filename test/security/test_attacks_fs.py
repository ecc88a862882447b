"""Attacks on the host's files from images, mount requests and containers (DESIGN.md: a pod's
files stay inside its rootfs; the runtime's own files and mounts cannot be redirected):
  - image layers that try to leave their directory, beyond test_images.py's four cases: absolute
    names, deep "..", a symlink made in one layer and used in the next, hard links to absolute
    host paths and through symlinks, whiteouts and opaque markers through a symlink;
  - mount requests: ".." in container_path, container_path through an image symlink to a host
    path, relative paths, a CRI mount over the runtime's GPU socket directory;
  - symlink swaps in the image for every file the runtime puts into the rootfs (/etc/hosts,
    /etc/resolv.conf, /etc/hostname, /etc/passwd for user names, the image's libcuda.so.1), and
    symlinks the container makes in its writable layer before stats and removal;
  - the log path: a container that can see its own log directory swaps its log file for a
    symlink to a host file, then the log is reopened (ReopenContainerLog).
Every host target is a canary directory whose contents are compared before and after."""
import hashlib
import os
import shutil

import grpc
import pytest

from attack_common import R  # noqa: I100 (attack_common puts test/integration on sys.path)
from attack_common import (SHIM, SOFT_GPU, attacker_layer, daemon_healthy, gpu_pod, registry,  # noqa: F401
                           run_container, sh, wait_log, wait_until)
from conftest import daemon, pb  # noqa: F401
from pods_common import cleanup_pods, pull  # noqa: F401

pytestmark = pytest.mark.usefixtures("cleanup_pods")

CANARY = "/tmp/vgpu-sec-canary-%d" % os.getpid()
CANARY_FILES = {
    "hosts": "127.0.0.1 canary-hosts\n",
    "resolv.conf": "nameserver 192.0.2.53\n",
    "hostname": "canary-host\n",
    "passwd": "root:x:0:0:root:/root:/bin/sh\nevil:x:4242:4242:evil:/:/bin/sh\n",
    "libcuda.so.1": "canary libcuda\n",
    "secret": "canary secret\n",
    "log.txt": "canary log\n",
}


@pytest.fixture
def daemon_config():
    return SOFT_GPU


def snapshot(root):
    """{relative path: (type, content hash or link target)} of everything under root, plus
    whether anything is mounted under it."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                snap[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                snap[rel] = ("dir", oct(os.stat(p).st_mode))
            else:
                with open(p, "rb") as f:
                    snap[rel] = ("file", hashlib.sha256(f.read()).hexdigest(), os.stat(p).st_nlink)
    try:
        snap["xattr:."] = sorted(os.listxattr(root))
    except OSError:
        pass
    with open("/proc/self/mountinfo") as f:
        snap["mounts"] = [l.split()[4] for l in f if l.split()[4].startswith(root)]
    return snap


@pytest.fixture(scope="module")
def canary():
    shutil.rmtree(CANARY, ignore_errors=True)
    os.makedirs(CANARY)
    for name, text in CANARY_FILES.items():
        with open(os.path.join(CANARY, name), "w") as f:
            f.write(text)
    yield CANARY
    shutil.rmtree(CANARY, ignore_errors=True)


@pytest.fixture
def untouched(canary):
    """Asserts after the test that nothing under the canary changed."""
    before = snapshot(canary)
    yield canary
    after = snapshot(canary)
    assert after == before, "the host canary changed:\nbefore %s\nafter  %s" % (before, after)


def layer_dirs_sharing_inode(daemon, path):
    ino = os.stat(path).st_ino, os.stat(path).st_dev
    found = []
    for dirpath, _, filenames in os.walk(os.path.join(daemon.state_dir, "images")):
        for n in filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if (st.st_ino, st.st_dev) == ino:
                found.append(p)
    return found


ESCAPES = {
    "absolute-name": lambda: [R.Tar().file("ok", "1").file(CANARY + "/abs-entry", "x")],
    "deep-dotdot": lambda: [R.Tar().dir("a").file("a/" + "../" * 12 + CANARY.lstrip("/") + "/deep", "x")],
    "symlink-across-layers": lambda: [R.Tar().symlink("lnk", CANARY),
                                      R.Tar().file("lnk/cross-layer", "x").dir("lnk2")],
    "hardlink-absolute": lambda: [R.Tar().hardlink("h", CANARY + "/secret")],
    "hardlink-through-symlink": lambda: [R.Tar().symlink("sl", CANARY).hardlink("h", "sl/secret")],
    "hardlink-through-symlink-next-layer": lambda: [R.Tar().symlink("sl", CANARY),
                                                    R.Tar().hardlink("h", "sl/secret")],
    "whiteout-through-symlink": lambda: [R.Tar().symlink("sl", CANARY), R.Tar().file("sl/.wh.secret")],
    "opaque-through-symlink": lambda: [R.Tar().symlink("sl", CANARY), R.Tar().file("sl/.wh..wh..opq")],
    "dotdot-whiteout": lambda: [R.Tar().dir("d").file("d/../../.wh.secret")],
    "file-over-symlink": lambda: [R.Tar().symlink("f", CANARY + "/secret"), R.Tar().file("f", "overwritten")],
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_image_layer_cannot_write_outside(daemon, registry, untouched, case):
    layers = [t.bytes() for t in ESCAPES[case]()]
    tag = case
    registry.push_image("sec/escape", tag, layers, config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    ref = "%s/sec/escape:%s" % (registry.host, tag)
    try:
        pull(daemon, ref)
        pulled = True
    except grpc.RpcError as e:
        pulled = False
        assert e.code() != grpc.StatusCode.UNAVAILABLE, e  # refused by the unpacker, not a registry problem
        assert "layer" in e.details(), e.details()
    # whatever the verdict, nothing of the host is linked into the store
    assert not layer_dirs_sharing_inode(daemon, os.path.join(untouched, "secret")), case
    if pulled:  # accepted (the entry was kept inside the layer): the store holds it, not the host
        daemon.image.RemoveImage(daemon.pb.RemoveImageRequest(image=daemon.pb.ImageSpec(image=ref)), timeout=30)
    daemon_healthy(daemon)


def symlinked_layer(L):
    """The attacker image, with every file the runtime touches a symlink to the host canary."""
    t = L.t
    L.mkdirs("mnt")
    t.symlink("mnt/target", CANARY + "/mnt-target")
    t.symlink("mnt/dir", CANARY)
    # replace etc/hosts etc. (the layer has etc/passwd: a later entry of the same name wins)
    for name in ("hosts", "resolv.conf", "hostname", "passwd"):
        t.symlink("etc/" + name, CANARY + "/" + name)
    t.symlink("usr/lib/x86_64-linux-gnu/libcuda.so.1", CANARY + "/libcuda.so.1")


@pytest.fixture(scope="module")
def symlinked_image(registry, canary):
    registry.push_image("sec/symlinked", "1", [attacker_layer(symlinked_layer)],
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    return "%s/sec/symlinked:1" % registry.host


def test_runtime_files_through_image_symlinks_stay_inside(daemon, symlinked_image, untouched, tmp_path):
    pull(daemon, symlinked_image)
    cfg, pod = gpu_pod(daemon, "symlinks", str(tmp_path / "logs"))
    host_dir = tmp_path / "vol"
    host_dir.mkdir()
    (host_dir / "marker").write_text("volume\n")
    mounts = [daemon.pb.Mount(container_path="/mnt/target", host_path=str(host_dir)),
              daemon.pb.Mount(container_path="/mnt/dir/sub", host_path=str(host_dir)),
              daemon.pb.Mount(container_path="/../../.." + CANARY + "/dotdot", host_path=str(host_dir))]
    c = run_container(daemon, pod, cfg, symlinked_image, "c", ["sleep", "600"], mounts=mounts)
    # inside: the runtime's files and the mounts are where the container's symlinks lead within its
    # own root, i.e. the canary path inside the rootfs, not the host's canary
    code, out = sh(daemon, c, "cat /etc/hostname /etc/hosts; cat %s/hosts" % CANARY)
    assert code == 0 and "canary" not in out and "symlinks" in out, out
    code, out = sh(daemon, c, "cat /mnt/target/marker %s/mnt-target/marker %s/dotdot/marker /mnt/dir/sub/marker"
                   % (CANARY, CANARY))
    assert code == 0 and out.split() == ["volume"] * 4, out
    # the image's libcuda.so.1 link points outside: the shim is not mounted "there" (on the host);
    # the program still gets the shim at the fixed path
    code, out = sh(daemon, c, "wc -c < /usr/lib/vgpu/libcuda.so.1; cat /usr/lib/x86_64-linux-gnu/libcuda.so.1 "
                              "2>&1 | head -c 100")
    assert out.split()[0] == str(os.path.getsize(SHIM)) and "canary libcuda" not in out, out
    # a user name looked up in /etc/passwd, which links to the host's canary passwd: not found there
    ucfg_mounts = []
    with pytest.raises(grpc.RpcError) as e:
        from pods_common import container_config, create
        cc = container_config(daemon.pb, "evil", symlinked_image, command=["id"], mounts=ucfg_mounts)
        cc.linux.security_context.run_as_username = "evil"
        create(daemon, pod, cfg, cc)
    assert "evil" in e.value.details(), e.value.details()

    # symlinks the container itself makes in its writable layer, then stats and removal
    code, out = sh(daemon, c, "ln -s %s /escape; ln -s / /root-link; mkdir -p /d; ln -s %s/secret /d/secret; "
                              "ln -s /proc/1/root /proc-root; echo done" % (CANARY, CANARY))
    assert "done" in out, out
    daemon.runtime.ContainerStats(daemon.pb.ContainerStatsRequest(container_id=c), timeout=30)
    daemon.runtime.RemoveContainer(daemon.pb.RemoveContainerRequest(container_id=c), timeout=60)
    daemon_healthy(daemon)


def test_log_path_symlink_swap(daemon, pb, registry, attacker_image_plain, canary, tmp_path):
    """A container that sees its own log directory (a hostPath of the pod's log dir, as log
    shippers have) replaces its log file with a symlink to a host file and asks for a reopen."""
    before = snapshot(canary)
    pull(daemon, attacker_image_plain)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    cfg, pod = gpu_pod(daemon, "logswap", str(log_dir))
    mounts = [pb.Mount(container_path="/logs", host_path=str(log_dir))]
    c = run_container(daemon, pod, cfg, attacker_image_plain, "swap",
                      ["sh", "-c", "while :; do echo line; sleep 0.2; done"], mounts=mounts)
    wait_log(daemon, c, "line")
    code, out = sh(daemon, c, "rm /logs/swap.log && ln -s %s/log.txt /logs/swap.log && ls -l /logs" % CANARY)
    assert code == 0, out
    try:
        daemon.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=c), timeout=30)
    except grpc.RpcError:
        pass  # refusing to reopen through a symlink is fine too
    import time
    time.sleep(1)  # a few more lines written
    daemon_healthy(daemon)
    after = snapshot(canary)
    with open(os.path.join(canary, "log.txt")) as f:
        text = f.read()
    with open(os.path.join(canary, "log.txt"), "w") as f:  # restore for the other tests
        f.write(CANARY_FILES["log.txt"])
    assert after == before, "the monitor wrote the container's log through its symlink into a host file:\n" + text[:300]


@pytest.fixture(scope="module")
def attacker_image_plain(registry):
    registry.push_image("sec/attacker", "fs", [attacker_layer()],
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    return "%s/sec/attacker:fs" % registry.host


def test_mount_requests_validated(daemon, pb, attacker_image_plain, tmp_path):
    pull(daemon, attacker_image_plain)
    cfg_a, pod_a = gpu_pod(daemon, "mnt-a", str(tmp_path / "a"))
    cfg_b, pod_b = gpu_pod(daemon, "mnt-b", str(tmp_path / "b"))
    from pods_common import container_config, create
    # relative paths: refused
    for cp, hp in (("relative/path", str(tmp_path)), ("/ok", "relative/host"), ("/ok", "../../etc")):
        cc = container_config(pb, "rel", attacker_image_plain, command=["true"],
                              mounts=[pb.Mount(container_path=cp, host_path=hp)])
        with pytest.raises(grpc.RpcError) as e:
            create(daemon, pod_b, cfg_b, cc)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (cp, hp, e.value)
    # a CRI mount of pod A's socket directory over /run/vgpu (or its parent) of pod B: the
    # runtime's own mount comes last and wins, so pod B still reaches only its own broker
    a_dir = os.path.join(daemon.run_dir, "gpu", pod_a)
    mounts = [pb.Mount(container_path="/run/vgpu", host_path=a_dir),
              pb.Mount(container_path="/run", host_path=a_dir)]
    for m in mounts:
        c = run_container(daemon, pod_b, cfg_b, attacker_image_plain, "over-" + m.container_path.replace("/", "-"),
                          ["sleep", "600"], mounts=[m])
        code, out = sh(daemon, c, "pod_probe hello /run/vgpu/vgpu.sock")
        assert "POD_ID " + pod_b[:32] in out, (m.container_path, out)
    daemon_healthy(daemon)


def special_files_layer(kind, name):
    """The attacker image with etc/<name> replaced by a FIFO or a character device (/dev/zero's
    numbers): files the runtime reads from the image (user and group lookups)."""
    import tarfile

    def extra(L):
        t = L.t
        if kind == "fifo":
            t.tar.addfile(t._info("etc/" + name, tarfile.FIFOTYPE, 0o644))
        else:
            t.tar.addfile(t._info("etc/" + name, tarfile.CHRTYPE, 0o644, devmajor=1, devminor=5))
    return attacker_layer(extra)


def pod_cgroup_pids(pod_id):
    """Pids in the pod's cgroups (any v1 controller that runc used, or v2), recursively."""
    pids = set()
    for root in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
        base = os.path.join(root, "vgpu-cri", pod_id)
        for dirpath, _, files in os.walk(base):
            if "cgroup.procs" in files:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
    return pids


@pytest.mark.parametrize("kind,name", [("fifo", "group"), ("fifo", "passwd"), ("zero", "passwd")])
def test_image_special_files_do_not_hang_create(daemon, pb, registry, kind, name, tmp_path):
    """etc/passwd or etc/group of the image is a FIFO (an open() that never returns) or a copy of
    /dev/zero (endless reads). Both the daemon (user lookups) and runc's init (supplementary
    groups, inside the container) read them: CreateContainer must answer within the monitor's
    30 s sync bound (plus runc's cleanup), the daemon stay responsive meanwhile, and nothing of the
    attempt stay behind."""
    import time
    from pods_common import container_config, create
    from attack_common import plain_pod
    tag = "%s-%s" % (kind, name)
    registry.push_image("sec/special", tag, [special_files_layer(kind, name)],
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/", "User": "root"})
    ref = "%s/sec/special:%s" % (registry.host, tag)
    pull(daemon, ref)
    cfg, pod = plain_pod(daemon, "special", str(tmp_path))
    cc = container_config(pb, "c", ref, command=["true"])
    result = {}

    def attempt():
        t0 = time.time()
        try:
            result["id"] = create(daemon, pod, cfg, cc, timeout=90)
        except grpc.RpcError as e:
            result["error"] = e
        result["took"] = time.time() - t0
    import threading
    t = threading.Thread(target=attempt)
    t.start()
    time.sleep(1)
    daemon_healthy(daemon)  # other calls are served meanwhile
    t.join(100)
    assert "took" in result and result["took"] < 75, result
    if "error" in result:
        assert result["error"].code() != grpc.StatusCode.DEADLINE_EXCEEDED, result
    else:  # runc's init read the file and went on: the container starts
        daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=result["id"]), timeout=60)
    assert wait_until(lambda: not pod_cgroup_pids(pod), timeout=10), \
        "processes left in the pod's cgroups: %s" % pod_cgroup_pids(pod)
    daemon_healthy(daemon)


def test_image_device_nodes_unusable(daemon, pb, registry, tmp_path):
    """An image may carry device nodes (/dev/mem's and a loop device's numbers, mode 0666): the
    container's device cgroup denies them (a non-privileged container), and the store that holds
    them on the host is not reachable by other users (0700)."""
    import tarfile
    from attack_common import plain_pod

    def extra(L):
        t = L.t
        t.tar.addfile(t._info("mem", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=1))
        t.tar.addfile(t._info("loop", tarfile.BLKTYPE, 0o666, devmajor=7, devminor=0))
    registry.push_image("sec/devices", "1", [attacker_layer(extra)],
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    ref = "%s/sec/devices:1" % registry.host
    pull(daemon, ref)
    cfg, pod = plain_pod(daemon, "devices", str(tmp_path))
    c = run_container(daemon, pod, cfg, ref, "c", ["sleep", "600"])
    code, out = sh(daemon, c, "ls -l /mem /loop; head -c 16 /mem | wc -c; head -c 16 /loop | wc -c; "
                              "echo x > /mem; echo x > /loop")
    assert out.count("Operation not permitted") >= 4, out
    assert oct(os.stat(os.path.join(daemon.state_dir, "images")).st_mode & 0o777) == "0o700"
    daemon_healthy(daemon)
