"""Containers on the runc handler: exit codes and reasons, StopContainer's timeout (SIGTERM, then
SIGKILL), CRI log format with partial lines and ReopenContainerLog, ExecSync (output, exit code,
timeout that kills), stats of a busy container, container events, List filters, and bad input."""
import os
import threading
import time

import grpc
import pytest

from pods_common import (cleanup_pods, container_config, create, exec_sync, image_ref, info_json, log_text,  # noqa: F401
                         pids_in, pod_config, pod_status, pull, read_cri_log, registry_dir, run_pod, start,
                         status, wait_for, wait_state)

pytestmark = pytest.mark.usefixtures("cleanup_pods")


@pytest.fixture
def img(daemon, image_ref):  # noqa: F811
    pull(daemon, image_ref)
    return image_ref


@pytest.fixture
def pod(daemon, tmp_path):
    cfg = pod_config(daemon.pb, "ctr", log_dir=str(tmp_path), labels={"app": "ctr"})
    return run_pod(daemon, cfg), cfg


def test_exit_code_and_reason(daemon, img, pod, tmp_path):
    pb = daemon.pb
    pod_id, cfg = pod
    cid = create(daemon, pod_id, cfg, container_config(pb, "exit3", img, command=["sh", "-c", "echo bye; exit 3"],
                                                         log_path="exit3.log"))
    st = status(daemon, cid)
    assert st.state == pb.CONTAINER_CREATED and st.started_at == 0 and st.created_at > 0
    start(daemon, cid)
    st = wait_state(daemon, cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 3 and st.reason == "Error"
    assert st.created_at <= st.started_at <= st.finished_at
    assert st.log_path == str(tmp_path / "exit3.log")
    assert log_text(read_cri_log(st.log_path)) == [b"bye"]
    with pytest.raises(grpc.RpcError) as e:
        start(daemon, cid)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and cid in e.value.details()
    # a process over its memory limit: killed by the kernel, reason OOMKilled
    oom = create(daemon, pod_id, cfg, container_config(
        pb, "oom", img, command=["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=16 << 20)))
    start(daemon, oom)
    st = wait_state(daemon, oom, pb.CONTAINER_EXITED)
    assert st.exit_code == 137 and st.reason == "OOMKilled", (st.exit_code, st.reason)
    ok = create(daemon, pod_id, cfg, container_config(pb, "exit0", img, command=["true"]))
    start(daemon, ok)
    st = wait_state(daemon, ok, pb.CONTAINER_EXITED)
    assert st.exit_code == 0 and st.reason == "Completed"


def test_stop_timeout_then_kill(daemon, img, pod):
    pb = daemon.pb
    pod_id, cfg = pod
    # Ignores SIGTERM: StopContainer must SIGKILL it after the timeout.
    stubborn = create(daemon, pod_id, cfg, container_config(
        pb, "stubborn", img, command=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]))
    start(daemon, stubborn)
    time.sleep(0.3)
    t0 = time.time()
    daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=stubborn, timeout=1), timeout=30)
    took = time.time() - t0
    st = status(daemon, stubborn)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137
    assert 0.9 <= took < 5, took
    # Honours SIGTERM: stops well within its timeout.
    # (PID 1 of a pid namespace gets no default SIGTERM action: the shell handles it.)
    polite = create(daemon, pod_id, cfg, container_config(
        pb, "polite", img, command=["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"]))
    start(daemon, polite)
    time.sleep(0.5)  # until the shell has set its trap
    t0 = time.time()
    daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=polite, timeout=10), timeout=30)
    assert time.time() - t0 < 3
    st = status(daemon, polite)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 143
    # Idempotent.
    daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=polite, timeout=10), timeout=30)


def test_logs_partial_lines_and_reopen(daemon, img, pod, tmp_path):
    pb = daemon.pb
    pod_id, cfg = pod
    script = ("printf 'a%.0s' $(seq 40000); echo; echo err >&2; printf 'no-newline'; "
              "while [ ! -f /tmp/go ]; do sleep 0.05; done; echo after-rotate")
    cid = create(daemon, pod_id, cfg, container_config(pb, "logger", img, command=["sh", "-c", script],
                                                         log_path="logger/0.log"))
    start(daemon, cid)
    path = str(tmp_path / "logger" / "0.log")
    wait_for(lambda: os.path.exists(path) and b"no-newline" in open(path, "rb").read(), what="log output")
    recs = read_cri_log(path)
    out = [r for r in recs if r[0] == "stdout"]
    assert [(t, len(c)) for _, t, c in out[:3]] == [("P", 16384), ("P", 16384), ("F", 40000 - 2 * 16384)]
    assert all(c == b"a" * len(c) for _, _, c in out[:3])
    assert ("stderr", "F", b"err") in recs
    # kubelet's rotation: rename, then ReopenContainerLog.
    os.rename(path, path + ".1")
    daemon.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=10)
    assert os.path.exists(path)
    exec_sync(daemon, cid, ["touch", "/tmp/go"])
    wait_state(daemon, cid, pb.CONTAINER_EXITED)
    assert log_text(read_cri_log(path)) == [b"after-rotate"]
    # the partial line was flushed before the rotation
    assert log_text(read_cri_log(path + ".1"), "stdout")[-1] == b"no-newline"
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_exec_sync(daemon, img, pod):
    pb = daemon.pb
    pod_id, cfg = pod
    cid = create(daemon, pod_id, cfg, container_config(pb, "exec", img, command=["sleep", "1000"],
                                                         envs={"FOO": "bar"}))
    start(daemon, cid)
    r = exec_sync(daemon, cid, ["sh", "-c", "echo out $FOO $FROM_IMAGE; echo err >&2; exit 7"])
    assert r.stdout == b"out bar yes\n" and r.stderr == b"err\n" and r.exit_code == 7
    r = exec_sync(daemon, cid, ["cat", "/etc/hostname"])
    assert r.stdout == b"ctr\n" and r.exit_code == 0
    t0 = time.time()
    with pytest.raises(grpc.RpcError) as e:
        exec_sync(daemon, cid, ["sh", "-c", "echo started; exec sleep 77"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 5
    # the exec'd process was killed
    wait_for(lambda: b"sleep 77" not in exec_sync(daemon, cid, ["ps", "-o", "args"]).stdout, timeout=5,
             what="exec'd process to die")
    with pytest.raises(grpc.RpcError) as e:
        exec_sync(daemon, cid, [])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        exec_sync(daemon, cid, ["true"])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_stats_busy_container(daemon, img, pod):
    pb = daemon.pb
    pod_id, cfg = pod
    busy = create(daemon, pod_id, cfg, container_config(
        pb, "busy", img, command=["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1k count=256; while :; do :; done"],
        labels={"kind": "busy"}))
    idle = create(daemon, pod_id, cfg, container_config(pb, "idle", img, command=["sleep", "1000"]))
    start(daemon, busy)
    start(daemon, idle)
    time.sleep(0.5)
    s1 = daemon.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=busy), timeout=10).stats
    time.sleep(0.5)
    s2 = daemon.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=busy), timeout=10).stats
    assert s2.attributes.id == busy and s2.attributes.metadata.name == "busy"
    assert s2.cpu.usage_core_nano_seconds.value > s1.cpu.usage_core_nano_seconds.value > 0
    # nanocores from the two samples; how much of a core depends on the machine's load
    assert s2.cpu.usage_nano_cores.value > 0
    si = daemon.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=idle), timeout=10).stats
    assert si.cpu.usage_core_nano_seconds.value < s2.cpu.usage_core_nano_seconds.value
    assert s2.memory.working_set_bytes.value > 0
    assert s2.writable_layer.used_bytes.value >= 256 * 1024
    lst = daemon.runtime.ListContainerStats(pb.ListContainerStatsRequest(), timeout=10).stats
    assert {s.attributes.id for s in lst} == {busy, idle}
    f = pb.ContainerStatsFilter(label_selector={"kind": "busy"})
    assert [s.attributes.id for s in daemon.runtime.ListContainerStats(
        pb.ListContainerStatsRequest(filter=f), timeout=10).stats] == [busy]
    ps = daemon.runtime.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=10).stats
    assert ps.attributes.id == pod_id and len(ps.linux.containers) == 2
    assert ps.linux.cpu.usage_core_nano_seconds.value >= s2.cpu.usage_core_nano_seconds.value
    assert ps.linux.memory.working_set_bytes.value > 0
    assert len(daemon.runtime.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=10).stats) == 1


def test_events(daemon, img, pod):
    pb = daemon.pb
    pod_id, cfg = pod
    events = []
    stream = daemon.runtime.GetContainerEvents(pb.GetEventsRequest(), timeout=180)

    def collect():
        try:
            for ev in stream:
                events.append(ev)
        except grpc.RpcError:
            pass
    t = threading.Thread(target=collect)
    t.start()
    # The stream has no "subscribed" signal: create probe containers until one's event arrives,
    # so the checked sequence below cannot start before the subscription.
    probes = []
    deadline = time.time() + 60
    while not events:
        assert time.time() < deadline, "no event ever arrived on the stream"
        probes.append(create(daemon, pod_id, cfg, container_config(pb, "probe%d" % len(probes), img,
                                                                    command=["true"])))
        time.sleep(0.5)
    for p in probes:
        daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=p), timeout=30)
    cid = create(daemon, pod_id, cfg, container_config(pb, "ev", img, command=["true"]))
    start(daemon, cid)
    wait_state(daemon, cid, pb.CONTAINER_EXITED)
    daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=30)
    wait_for(lambda: len([e for e in events if e.container_id == cid]) >= 4, timeout=60, what="4 events")
    stream.cancel()
    t.join(10)
    mine = [e for e in events if e.container_id == cid]
    assert [e.container_event_type for e in mine] == [
        pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT]
    assert mine[2].containers_statuses[0].state == pb.CONTAINER_EXITED
    assert mine[0].pod_sandbox_status.id == pod_id


def test_list_filters(daemon, img, tmp_path):
    pb = daemon.pb
    cfg1 = pod_config(pb, "f1", labels={"tier": "web", "n": "1"})
    cfg2 = pod_config(pb, "f2", labels={"tier": "db", "n": "2"})
    p1, p2 = run_pod(daemon, cfg1), run_pod(daemon, cfg2)
    c1 = create(daemon, p1, cfg1, container_config(pb, "c1", img, command=["sleep", "1000"], labels={"x": "1"}))
    c2 = create(daemon, p2, cfg2, container_config(pb, "c2", img, command=["true"], labels={"x": "2"}))
    start(daemon, c1)
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p2), timeout=30)

    def pods(**f):
        return sorted(p.id for p in daemon.runtime.ListPodSandbox(
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**f)), timeout=10).items)

    def ctrs(**f):
        return sorted(c.id for c in daemon.runtime.ListContainers(
            pb.ListContainersRequest(filter=pb.ContainerFilter(**f)), timeout=10).containers)
    assert pods() == sorted([p1, p2])
    assert pods(id=p1) == [p1] and pods(id=p2[:12]) == [p2]
    assert pods(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) == [p1]
    assert pods(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)) == [p2]
    assert pods(label_selector={"tier": "db"}) == [p2]
    assert pods(label_selector={"tier": "db", "n": "1"}) == []
    assert ctrs() == sorted([c1, c2])
    assert ctrs(id=c2) == [c2]
    assert ctrs(pod_sandbox_id=p1) == [c1]
    assert ctrs(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == [c1]
    assert ctrs(state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED)) == [c2]
    assert ctrs(label_selector={"x": "2"}) == [c2]
    assert ctrs(pod_sandbox_id=p2, label_selector={"x": "1"}) == []
    items = daemon.runtime.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(id=c1)),
                                          timeout=10).containers
    assert items[0].metadata.name == "c1" and items[0].pod_sandbox_id == p1 and items[0].image.image == img
    assert items[0].labels["x"] == "1" and items[0].image_ref.startswith("sha256:")


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_bad_input(daemon, img, pod, tmp_path):
    pb = daemon.pb
    pod_id, cfg = pod
    rt = daemon.runtime
    NF, INV, FP = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    # unknown ids
    for fn in (lambda: status(daemon, "f" * 64),
               lambda: start(daemon, "f" * 64),
               lambda: rt.StopContainer(pb.StopContainerRequest(container_id="f" * 64), timeout=10),
               lambda: pod_status(daemon, "e" * 64),
               lambda: rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id="e" * 64), timeout=10),
               lambda: create(daemon, "e" * 64, cfg, container_config(pb, "x", img, command=["true"]))):
        code, msg = code_of(fn)
        assert code == NF and ("f" * 64 in msg or "e" * 64 in msg), msg
    # removal of unknown ids is not an error
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id="f" * 64), timeout=10)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id="e" * 64), timeout=10)
    # unknown image
    code, msg = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "x", "nosuch/image:1")))
    assert code == NF and "nosuch/image" in msg
    # unknown handler
    code, msg = code_of(lambda: run_pod(daemon, pod_config(pb, "h"), handler="kata"))
    assert code == INV and "kata" in msg
    # duplicate pod metadata; a new attempt is fine
    code, msg = code_of(lambda: run_pod(daemon, cfg))
    assert code == grpc.StatusCode.ALREADY_EXISTS and pod_id in msg
    p2 = run_pod(daemon, pod_config(pb, "ctr", log_dir=str(tmp_path), attempt=1))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p2), timeout=30)
    # duplicate container name in the pod
    c = create(daemon, pod_id, cfg, container_config(pb, "dup", img, command=["true"]))
    code, msg = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "dup", img, command=["true"])))
    assert code == grpc.StatusCode.ALREADY_EXISTS and c in msg
    # mount of a path that does not exist
    m = pb.Mount(container_path="/data", host_path="/nonexistent/path/x")
    code, msg = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "m", img, command=["true"],
                                                                                 mounts=[m])))
    assert code == NF and "/nonexistent/path/x" in msg, (code, msg)
    # absurd resources
    for res in (pb.LinuxContainerResources(memory_limit_in_bytes=1),
                pb.LinuxContainerResources(memory_limit_in_bytes=-5),
                pb.LinuxContainerResources(cpu_shares=10 ** 12),
                pb.LinuxContainerResources(cpu_quota=5),
                pb.LinuxContainerResources(oom_score_adj=5000),
                pb.LinuxContainerResources(cpuset_cpus="all of them")):
        code, msg = code_of(lambda: create(daemon, pod_id, cfg, container_config(
            pb, "r", img, command=["true"], resources=res)))
        assert code == INV, (res, code, msg)
    # very long strings
    code, _ = code_of(lambda: run_pod(daemon, pod_config(pb, "x" * 100000)))
    assert code == INV
    code, _ = code_of(lambda: run_pod(daemon, pod_config(pb, "longhost", hostname="h" * 100)))
    assert code == INV
    code, _ = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "n" * 5000, img)))
    assert code == INV
    # no command anywhere: image has Cmd sh, so this one works; an empty name does not
    code, _ = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "", img)))
    assert code == INV
    # unknown user
    cc = container_config(pb, "u", img, command=["true"])
    cc.linux.security_context.run_as_username = "nobody-here"
    code, msg = code_of(lambda: create(daemon, pod_id, cfg, cc))
    assert code == INV and "nobody-here" in msg
    # nothing is left of the failed creations
    names = [x.metadata.name for x in rt.ListContainers(pb.ListContainersRequest(), timeout=10).containers]
    assert names == ["dup"]
    assert len(os.listdir(os.path.join(daemon.state_dir, "containers"))) == 1
    # wrong states
    code, _ = code_of(lambda: exec_sync(daemon, c, ["true"]))
    assert code == FP
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
    code, msg = code_of(lambda: create(daemon, pod_id, cfg, container_config(pb, "late", img, command=["true"])))
    assert code == FP and pod_id in msg


def test_update_resources(daemon, img, pod):
    pb = daemon.pb
    pod_id, cfg = pod
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_shares=256)
    cid = create(daemon, pod_id, cfg, container_config(pb, "res", img, command=["sleep", "1000"], resources=res))
    start(daemon, cid)
    cg = info_json(daemon.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True),
                                                  timeout=10))["cgroupsPath"]
    v2 = not os.path.isdir("/sys/fs/cgroup/memory")

    def mem_limit():
        path = "/sys/fs/cgroup%s/memory.max" % cg if v2 else "/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % cg
        return int(open(path).read())
    assert mem_limit() == 64 << 20
    daemon.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20, cpu_shares=512)),
        timeout=30)
    assert mem_limit() == 96 << 20
    st = status(daemon, cid)
    assert st.resources.linux.memory_limit_in_bytes == 96 << 20 and st.resources.linux.cpu_shares == 512
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(cpu_quota=3)), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
