"""Crash and restart: the daemon is killed with SIGKILL at a random point inside RunPodSandbox,
CreateContainer, StartContainer, PullImage and RemovePodSandbox, started again on the same state, and
the state is checked for consistency (check_consistent below):

- every listed pod, container and image is real: state records, infra process, /dev/shm mount,
  pinned netns and CNI result of a ready pod; runc state, monitor, rootfs mount and process of a
  created/running container; content of an image;
- everything real is listed or gone: directories under state_dir and run_dir, `runc list` of the
  daemon's runc root, mounts under the daemon's root in /proc/self/mountinfo, vgpu-pause and
  vgpu-monitor processes of this build, cgroups named after any id the daemon ever logged, exit
  files, CNI leases, veths on the test bridge, iptables rules, CNI cache entries, GPU broker sockets
  and per-pod broker counters (soft TEST DEVICE);
- two witness pods (one plain, one GPU) with running containers made before the first crash still
  run with the same container pid after every restart, and exec works in them.

After the check the interrupted operation is finished the way kubelet would (retry or remove), and
the check runs again. The kill comes after a random delay drawn from the call's duration, measured
once per crash point without a kill. Seeds: VGPU_CRASH_SEEDS per point (default 3, for CI);
VGPU_CRASH_SEED_BASE shifts them. Each iteration prints its seed and delay for a replay. Needs root
(namespaces, CNI with Debian's bridge plugin on a test bridge of its own, as test_cni_pods.py).

Two regression tests put the daemon deterministically into states the loop found it leaving behind
(docs/reliability-runtime.md): a crash during CNI ADD, and a temp file of a blob write."""
import json
import os
import random
import re
import subprocess
import threading
import time

import grpc
import pytest

from conftest import BUILD_DIR, Daemon, check_sanitizer_clean, remove_tree
from pods_common import (container_config, exec_sync, image_ref, info_json, pod_config, pod_status,  # noqa: F401
                         pull, registry_dir, run_pod, wait_for, wait_state)
from test_cni import Net, iptables_save, sh
from test_cni import pytestmark as cni_marks
from test_gpu_pods import GPU_ENV, SHIM, gpu_image  # noqa: F401
import registry as R

pytestmark = cni_marks

SEEDS = int(os.environ.get("VGPU_CRASH_SEEDS", "3"))
SEED_BASE = int(os.environ.get("VGPU_CRASH_SEED_BASE", "0"))
POINTS = ["RunPodSandbox", "CreateContainer", "StartContainer", "PullImage", "RemovePodSandbox"]
PAUSE_BIN = os.path.realpath(os.path.join(BUILD_DIR, "cri", "vgpu-pause"))
MONITOR_BIN = os.path.realpath(os.path.join(BUILD_DIR, "cri", "vgpu-monitor"))
ID_RE = re.compile(r"\b(?:sandbox|container) ([0-9a-f]{64})\b")
TAG = "crash%04x" % random.randrange(1 << 16)  # in every pod name and hostname of this run


@pytest.fixture(scope="module")
def pull_image(registry_dir):  # noqa: F811
    """An image only PullImage uses: three layers of incompressible data (a pull takes a while)."""
    reg = R.Registry(registry_dir)
    rnd = random.Random(7)
    layers = [R.Tar().dir("data").file("data/blob%d" % i, rnd.randbytes(3 << 20)).bytes() for i in range(3)]
    reg.push_image("test/pullme", "crash", layers, config={"Cmd": ["sh"]})
    yield "%s/test/pullme:crash" % reg.host
    reg.stop()


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


@pytest.fixture
def crashd(net, image_ref, gpu_image, pull_image):  # noqa: F811
    """The daemon under test (its own temp root, socket, runc root; CNI on the test bridge; GPU pods on
    the soft test device), with both images pulled. Everything is removed at the end."""
    import tempfile
    workdir = tempfile.mkdtemp(prefix="vgpu-crash-", dir="/tmp")
    d = Daemon(workdir, {"cni": {"conf_dir": net.conf_dir, "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"]},
                         "gpu": {"backend": "soft", "shim_path": SHIM}})
    pull(d, image_ref)
    pull(d, gpu_image)
    yield d
    try:
        if d.proc.poll() is None:
            remove_everything(d)
            rc = d.terminate()
            assert rc == 0, "daemon exit code %s on SIGTERM:\n%s" % (rc, d.log()[-4000:])
        check_sanitizer_clean(d.log())
    finally:
        if os.environ.get("VGPU_KEEP_TEST_DIRS"):
            print("kept", workdir)
        else:
            remove_tree(workdir)


def remove_everything(d):
    pb = d.pb
    for p in d.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
        d.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=120)


# ---- what is real ----

def proc_stat(pid):
    """(state, start time) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError):
        return None


def alive(pid):
    st = proc_stat(pid) if pid > 0 else None
    return st is not None and st[0] not in ("Z", "X")


def processes_of(exe):
    """{pid: argv} of live processes running exe (this build's helpers)."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.path.realpath("/proc/%s/exe" % p) != exe:
                continue
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if alive(int(p)):
            out[int(p)] = argv
    return out


def mounts_below(path):
    with open("/proc/self/mountinfo") as f:
        return sorted({l.split()[4] for l in f if l.split()[4].startswith(path + "/")})


def runc_list(root):
    r = subprocess.run(["runc", "--root", root, "list", "--format", "json"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return {c["id"]: c["status"] for c in (json.loads(r.stdout or "null") or [])}


def cgroup_dirs(ids):
    """cgroup v1/v2 directories named after any of ids (pod parents /vgpu-cri/<pod>, containers)."""
    roots = ["/sys/fs/cgroup/vgpu-cri"] + ["/sys/fs/cgroup/%s/vgpu-cri" % c for c in
                                            ("memory", "pids", "cpu", "cpuacct", "devices", "freezer", "blkio")]
    found = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for pod in os.listdir(root):
            pdir = os.path.join(root, pod)
            if not os.path.isdir(pdir):
                continue
            if pod in ids:
                found.append(pdir)
            for c in os.listdir(pdir):
                if c in ids and os.path.isdir(os.path.join(pdir, c)):
                    found.append(os.path.join(pdir, c))
    return found


def logged_ids(d):
    return set(ID_RE.findall(d.log()))


def listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def check_consistent(d, net, witnesses, known_ids):
    """Assert that the daemon's lists and what exists on the host agree (see the module doc)."""
    pb = d.pb
    pods = {p.id: p for p in d.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items}
    ctrs = {c.id: c for c in d.runtime.ListContainers(pb.ListContainersRequest(), timeout=30).containers}
    images = {i.id for i in d.image.ListImages(pb.ListImagesRequest(), timeout=30).images}
    known_ids |= logged_ids(d) | set(pods) | set(ctrs)
    ready = {i for i, p in pods.items() if p.state == pb.SANDBOX_READY}
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    # state and run dirs hold exactly the listed objects
    state, run = d.state_dir, d.run_dir
    expect(listdir(os.path.join(state, "sandboxes")) == sorted(pods), "sandbox dirs %s != listed %s" % (
        listdir(os.path.join(state, "sandboxes")), sorted(pods)))
    expect(listdir(os.path.join(state, "containers")) == sorted(ctrs), "container dirs %s != listed %s" % (
        listdir(os.path.join(state, "containers")), sorted(ctrs)))
    stray_exits = [e for e in listdir(os.path.join(state, "exits")) if e not in ctrs]
    expect(not stray_exits, "exit files of unlisted containers: %s" % stray_exits)
    expect(set(listdir(os.path.join(run, "sandboxes"))) <= set(pods),
           "run dirs of unlisted pods: %s" % (set(listdir(os.path.join(run, "sandboxes"))) - set(pods)))
    # A pod whose infra process died (here: killed inside StopPodSandbox/RemovePodSandbox) is NOTREADY
    # and keeps its network until the next StopPodSandbox, as kubelet sends for such pods.
    pins = set(listdir(os.path.join(run, "netns")))
    expect(pins <= set(pods), "netns pins of unlisted pods: %s" % (pins - set(pods)))
    cni_cache = {f[:-5] for f in listdir(os.path.join(state, "cni")) if f.endswith(".json")}
    expect(cni_cache <= set(pods), "CNI cache entries of unlisted pods: %s" % (cni_cache - set(pods)))
    expect(listdir(os.path.join(state, "images", "tmp")) == [], "image store tmp/ not empty")

    # pods: real when listed
    infra_pids = {}
    for pid_, p in pods.items():
        sdir = os.path.join(state, "sandboxes", pid_)
        expect(os.path.exists(os.path.join(sdir, "meta.json")) and os.path.exists(os.path.join(sdir, "config.pb")),
               "pod %s: record incomplete" % pid_)
        info = info_json(pod_status(d, pid_, verbose=True))
        if p.state == pb.SANDBOX_READY:
            infra_pids[info["pid"]] = pid_
            expect(alive(info["pid"]), "pod %s: ready but infra %s is gone" % (pid_, info["pid"]))
            expect(os.path.join(run, "sandboxes", pid_, "shm") in mounts_below(run), "pod %s: no shm mount" % pid_)
            expect(os.path.exists(os.path.join(run, "netns", pid_)), "pod %s: no netns pin" % pid_)
            expect(pid_ in cni_cache, "pod %s: ready without a CNI result" % pid_)
            expect(pod_status(d, pid_).status.network.ip != "", "pod %s: ready without an IP" % pid_)
    # every live infra holder of this build belongs to a ready pod of this daemon, or to none we know
    for ppid, argv in processes_of(PAUSE_BIN).items():
        if ppid in infra_pids:
            continue
        # every pod of this run has TAG in its hostname (other daemons may use the same build)
        hn = argv[argv.index("--hostname") + 1] if "--hostname" in argv else ""
        expect(not hn.startswith(TAG + "-"), "infra process %d (%s) of no listed pod" % (ppid, " ".join(argv)))

    # containers: real when listed
    runc = runc_list(d.config["runtime_handlers"]["runc"]["runtime_root"])
    expect(set(runc) <= set(ctrs), "runc containers not listed: %s" % (set(runc) - set(ctrs)))
    monitors = {}
    for mpid, argv in processes_of(MONITOR_BIN).items():
        cid = argv[argv.index("--id") + 1] if "--id" in argv else ""
        if "--bundle" in argv and argv[argv.index("--bundle") + 1].startswith(state + "/"):
            monitors[cid] = mpid
    expect(set(monitors) <= set(ctrs), "monitors of unlisted containers: %s" % (set(monitors) - set(ctrs)))
    mounts = mounts_below(d.workdir)
    for cid, c in ctrs.items():
        cdir = os.path.join(state, "containers", cid)
        expect(c.pod_sandbox_id in pods, "container %s: its pod %s is not listed" % (cid, c.pod_sandbox_id))
        expect(os.path.exists(os.path.join(cdir, "meta.json")) and os.path.exists(os.path.join(cdir, "config.json")),
               "container %s: record incomplete" % cid)
        if c.state in (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING):
            want = "created" if c.state == pb.CONTAINER_CREATED else "running"
            expect(runc.get(cid) == want, "container %s: listed %s, runc says %s" % (cid, want, runc.get(cid)))
            expect(cid in monitors, "container %s: %s without a monitor" % (cid, want))
            expect(os.path.join(cdir, "rootfs") in mounts, "container %s: rootfs not mounted" % cid)
            info = info_json(d.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True),
                                                       timeout=10))
            expect(alive(info["pid"]), "container %s: %s, process %s gone" % (cid, want, info["pid"]))
    # mounts under the daemon's root: only those of listed objects
    allowed = {os.path.join(run, "sandboxes", p, "shm") for p in pods}
    allowed |= {os.path.join(run, "netns", p) for p in pods}
    allowed |= {os.path.join(state, "containers", c, "rootfs") for c in ctrs}
    expect(set(mounts) <= allowed, "mounts of no listed object: %s" % sorted(set(mounts) - allowed))
    # cgroups: containers of ours that are gone leave none
    gone = known_ids - set(pods) - set(ctrs)
    left = cgroup_dirs(gone)
    expect(not left, "cgroups of removed objects: %s" % left)
    # network: leases, veths, iptables rules belong to ready pods only
    leases = {}
    lease_dir = os.path.join(net.ipam_dir, net.name)
    for ip in net.leases():
        with open(os.path.join(lease_dir, ip)) as f:
            leases[ip] = f.read().split()[0] if os.path.getsize(os.path.join(lease_dir, ip)) else ""
    expect(set(leases.values()) <= cni_cache, "CNI leases of pods without a CNI result: %s" % {
        ip: o for ip, o in leases.items() if o not in cni_cache})
    veths = sh("ip", "-o", "link", "show", "master", net.bridge, check=False).stdout.count("veth")
    # (a DEL that a crash interrupted may have removed the veth but not the cached result yet)
    expect(len(ready) <= veths <= len(cni_cache), "%d veths on %s for %d ready pods, %d with a network" % (
        veths, net.bridge, len(ready), len(cni_cache)))
    rules = iptables_save()
    stale = [i for i in gone if i in rules]
    expect(not stale, "iptables rules of removed pods: %s" % stale)
    # GPU: sockets and broker pods of listed GPU pods only; ready GPU pods served
    gpu_dirs = set(listdir(os.path.join(run, "gpu")))
    gpu_pods = {i for i, p in pods.items() if p.annotations.get("vgpu.io/gpu") == "true"}
    expect(gpu_dirs <= gpu_pods, "GPU socket dirs of unlisted pods: %s" % (gpu_dirs - gpu_pods))
    m = {pm.pod_sandbox_id: {x.name: x.value.value for x in pm.metrics} for pm in
         d.runtime.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=10).pod_metrics}
    expect(set(m) == gpu_pods & ready, "broker pods %s != ready GPU pods %s" % (sorted(m), sorted(gpu_pods & ready)))
    for gp in gpu_pods & ready:
        expect(os.path.exists(os.path.join(run, "gpu", gp, "vgpu.sock")), "GPU pod %s: no broker socket" % gp)
        if gp in m:
            expect(m[gp]["vgpu_gpu_memory_used_bytes"] == 0 and m[gp]["vgpu_gpu_channels"] == 0,
                   "GPU pod %s: broker counters after restart %s" % (gp, m[gp]))
    # images: each listed one complete; records == listed
    recs = {r["id"] for r in R.store_check(state)}
    expect(recs == images, "image records %s != listed %s" % (sorted(recs), sorted(images)))
    # witnesses: still running, same process, exec works
    for cid, wpid in witnesses.items():
        st = d.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10)
        expect(st.status.state == pb.CONTAINER_RUNNING and info_json(st)["pid"] == wpid,
               "witness %s not running as pid %s: %s" % (cid, wpid, st.status.state))
    assert not problems, "inconsistent after restart:\n  " + "\n  ".join(problems)
    for cid in witnesses:
        assert exec_sync(d, cid, ["echo", "ok"]).stdout == b"ok\n"
    return pods, ctrs, images


# ---- the operations ----

def gpu_pod_cfg(pb, name, gpu):
    cfg = pod_config(pb, name)
    if gpu:
        cfg.annotations["vgpu.io/gpu"] = "true"
        cfg.annotations["vgpu.io/gpu-memory"] = "256Mi"
    return cfg


def ctr_cfg(pb, name, img, gpu):
    return container_config(pb, name, img, command=["sleep", "3600"], envs=GPU_ENV if gpu else None)


def find_pod(d, name):
    pb = d.pb
    return [p.id for p in d.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
            if p.metadata.name == name]


def pod_containers(d, pod):
    pb = d.pb
    return d.runtime.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod)),
                                    timeout=10).containers


def make_witnesses(d, image_ref, gpu_image):  # noqa: F811
    pb = d.pb
    out = {}
    for name, img, gpu in ((TAG + "-witness", image_ref, False), (TAG + "-witness-gpu", gpu_image, True)):
        cfg = gpu_pod_cfg(pb, name, gpu)
        pod = run_pod(d, cfg, timeout=60)
        cid = d.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=ctr_cfg(pb, "w", img, gpu), sandbox_config=cfg), timeout=60).container_id
        d.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        st = d.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10)
        out[cid] = info_json(st)["pid"]
    return out


class Op:
    """One crash point: prepare() makes what the call needs, call() is the RPC that is killed,
    settle() finishes the job after the restart the way kubelet would, and removes it again."""

    def __init__(self, d, point, rng, images):
        self.d, self.pb, self.point, self.rng = d, d.pb, point, rng
        self.busybox, self.gpu_img, self.pull_img = images
        self.gpu = rng.random() < 0.5 and point != "PullImage"
        self.name = "%s-%s-%d" % (TAG, point.lower(), rng.randrange(1 << 30))
        self.img = self.gpu_img if self.gpu else self.busybox
        self.cfg = gpu_pod_cfg(self.pb, self.name, self.gpu)
        self.pod = self.cid = None

    def prepare(self):
        d, pb = self.d, self.pb
        if self.point == "PullImage":
            d.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=self.pull_img)), timeout=60)
            return
        if self.point == "RunPodSandbox":
            return
        self.pod = run_pod(d, self.cfg, timeout=60)
        if self.point == "CreateContainer":
            return
        self.cid = self.create()
        if self.point == "StartContainer":
            return
        d.runtime.StartContainer(pb.StartContainerRequest(container_id=self.cid), timeout=60)
        # RemovePodSandbox: one running and one created container
        self.create(name="idle")

    def create(self, name="c"):
        pb = self.pb
        return self.d.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.pod, config=ctr_cfg(pb, name, self.img, self.gpu), sandbox_config=self.cfg),
            timeout=60).container_id

    def call(self):
        d, pb = self.d, self.pb
        if self.point == "RunPodSandbox":
            run_pod(d, self.cfg, timeout=60)
        elif self.point == "CreateContainer":
            self.create()
        elif self.point == "StartContainer":
            d.runtime.StartContainer(pb.StartContainerRequest(container_id=self.cid), timeout=60)
        elif self.point == "PullImage":
            pull(d, self.pull_img)
        elif self.point == "RemovePodSandbox":
            d.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=self.pod), timeout=60)

    def done(self):
        """Whether the interrupted call's effect is there (it may have finished before the kill)."""
        d, pb = self.d, self.pb
        if self.point == "RunPodSandbox":
            return bool(find_pod(d, self.name))
        if self.point == "PullImage":
            return any(self.pull_img in i.repo_tags for i in
                       d.image.ListImages(pb.ListImagesRequest(), timeout=10).images)
        if self.point == "RemovePodSandbox":
            return not find_pod(d, self.name)
        ctrs = pod_containers(d, self.pod)
        mine = [c for c in ctrs if c.metadata.name == "c"]
        if self.point == "CreateContainer":
            return bool(mine)
        return mine[0].state == pb.CONTAINER_RUNNING

    def settle(self):
        """Finish the interrupted work (retry), check it works, then remove it."""
        d, pb = self.d, self.pb
        if self.point == "PullImage":
            if not self.done():
                self.call()
            assert self.done()
            return
        if self.point == "RunPodSandbox" and not self.done():
            self.call()
        if self.point == "CreateContainer" and not self.done():
            self.call()
        if self.point == "StartContainer" and not self.done():
            self.call()
        if self.point != "RemovePodSandbox":
            self.pod = find_pod(d, self.name)[0]
            ctrs = pod_containers(d, self.pod)
            if self.point == "RunPodSandbox":
                self.create()
                ctrs = pod_containers(d, self.pod)
            for c in ctrs:
                if c.state == pb.CONTAINER_CREATED:
                    d.runtime.StartContainer(pb.StartContainerRequest(container_id=c.id), timeout=60)
                wait_state(d, c.id, pb.CONTAINER_RUNNING)
                assert exec_sync(d, c.id, ["echo", "alive"]).stdout == b"alive\n"
            if self.gpu:
                assert os.path.exists(os.path.join(d.run_dir, "gpu", self.pod, "vgpu.sock"))
        for p in find_pod(d, self.name):
            d.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=120)
        assert not find_pod(d, self.name)


def crash_during(d, op, delay):
    """Run op.call() on a thread, SIGKILL the daemon after delay seconds, start it again."""
    errors = []

    def target():
        try:
            op.call()
        except grpc.RpcError as e:
            errors.append(e.code())

    t = threading.Thread(target=target)
    t.start()
    time.sleep(delay)
    d.proc.kill()  # as a crash: nothing of the daemon runs after this
    d.proc.wait(timeout=30)
    t.join(timeout=60)
    assert not t.is_alive()
    d.kill()
    d.start()
    return errors


@pytest.mark.parametrize("point", POINTS)
def test_crash_and_restart(crashd, net, image_ref, gpu_image, pull_image, point):  # noqa: F811
    d = crashd
    images = (image_ref, gpu_image, pull_image)
    known = set()
    witnesses = make_witnesses(d, image_ref, gpu_image)
    check_consistent(d, net, witnesses, known)
    # the call's duration without a crash (the kill delays are drawn from it)
    op = Op(d, point, random.Random(-1), images)
    op.prepare()
    t0 = time.monotonic()
    op.call()
    duration = time.monotonic() - t0
    op.settle()
    check_consistent(d, net, witnesses, known)
    done = undone = 0
    for seed in range(SEED_BASE, SEED_BASE + SEEDS):
        rng = random.Random("%s/%d" % (point, seed))
        op = Op(d, point, rng, images)
        op.prepare()
        delay = rng.uniform(0, duration * 1.2)
        print("%s seed %d: gpu=%s kill after %.3fs of %.3fs" % (point, seed, op.gpu, delay, duration))
        crash_during(d, op, delay)
        try:
            check_consistent(d, net, witnesses, known)
            if op.done():
                done += 1
            else:
                undone += 1
            op.settle()
            check_consistent(d, net, witnesses, known)
        except AssertionError as e:
            raise AssertionError("%s seed %d (kill after %.3fs, gpu=%s): %s\nreplay: VGPU_CRASH_SEED_BASE=%d "
                                 "VGPU_CRASH_SEEDS=1 -k %s" % (point, seed, delay, op.gpu, e, seed, point)) from None
    print("CRASH-RESULT %s seeds=%d survived=%d done_before_kill=%d undone=%d duration=%.3fs" % (
        point, SEEDS, done + undone, done, undone, duration))


def test_kill_during_cni_add_leaves_no_infra_process(tmp_path):
    """Regression (found by the loop above): RunPodSandbox saved the infra process's pid only once
    the pod was ready, so a crash during CNI ADD (or before vgpu-pause answered) left the infra
    process and its namespaces behind with nothing pointing to them. Here a CNI plugin that sleeps
    in ADD holds the daemon in that window, deterministically."""
    import tempfile
    bindir, conf = tmp_path / "bin", tmp_path / "conf"
    bindir.mkdir()
    conf.mkdir()
    marker = tmp_path / "adding"
    plugin = bindir / "slowadd"
    plugin.write_text('#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then touch %s; sleep 5; fi\n'
                      'echo \'{"cniVersion": "1.0.0"}\'\n' % marker)
    plugin.chmod(0o755)
    (conf / "10-slow.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "slow", "plugins": [{"type": "slowadd"}]}))
    workdir = tempfile.mkdtemp(prefix="vgpu-crash-", dir="/tmp")
    d = Daemon(workdir, {"cni": {"conf_dir": str(conf), "bin_dirs": [str(bindir)]}})
    name = TAG + "-slowcni"
    try:
        def infra():
            return [p for p, argv in processes_of(PAUSE_BIN).items()
                    if "--hostname" in argv and argv[argv.index("--hostname") + 1] == name]

        def call():
            try:
                run_pod(d, pod_config(d.pb, name), timeout=60)
            except grpc.RpcError:
                pass

        t = threading.Thread(target=call)
        t.start()
        wait_for(marker.exists, timeout=30, what="CNI ADD to start")
        assert len(infra()) == 1  # the window: infra running, the pod not ready
        d.proc.kill()
        d.proc.wait(timeout=30)
        t.join(timeout=60)
        d.kill()
        d.start()
        assert not d.runtime.ListPodSandbox(d.pb.ListPodSandboxRequest(), timeout=10).items
        assert listdir(os.path.join(d.state_dir, "sandboxes")) == []
        assert infra() == [], "infra process of the interrupted RunPodSandbox left running"
        assert mounts_below(d.workdir) == []
        assert listdir(os.path.join(d.run_dir, "netns")) == []
    finally:
        for p in infra():
            os.kill(p, 9)  # only when the test failed: what it made itself
        rc = d.terminate()
        check_sanitizer_clean(d.log())
        remove_tree(workdir)
        assert rc == 0


def test_restart_removes_blob_temp_files():
    """Regression (found by the loop above, PullImage seed 1012): manifests and configs are written
    into blobs/ through a temp file renamed into place; a crash in between left the temp file for
    ever (no record names it, garbage collection looks at digests only). The state a crash leaves is
    made by hand here, deterministically."""
    import tempfile
    workdir = tempfile.mkdtemp(prefix="vgpu-crash-", dir="/tmp")
    d = Daemon(workdir, {})
    try:
        blobs = os.path.join(d.state_dir, "images", "blobs", "sha256")
        stray = os.path.join(blobs, "%s.tmp.AbC123" % ("ab" * 32))
        d.kill()
        with open(stray, "w") as f:
            f.write('{"half": ')
        d.start()
        assert os.listdir(blobs) == []
        R.store_check(d.state_dir)
    finally:
        rc = d.terminate()
        check_sanitizer_clean(d.log())
        remove_tree(workdir)
        assert rc == 0
