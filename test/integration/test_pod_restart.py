"""Daemon restart recovery on the runc handler: the daemon is killed with SIGKILL and started again
on the same state. Every pod and container is listed with the same state, running containers keep
running (same pid, logs still written by their monitor, exec works), a container that exited while
the daemon was down shows its exit code, a created container can still be started, and everything
can be stopped and removed afterwards."""
import json
import os
import time

import pytest

from pods_common import (cleanup_pods, container_config, create, exec_sync, image_ref, info_json, log_text,  # noqa: F401
                         pod_config, pod_status, pull, read_cri_log, registry_dir, run_pod, start, status,
                         wait_for, wait_state)

pytestmark = pytest.mark.usefixtures("cleanup_pods")


def snapshot(daemon):
    pb = daemon.pb
    pods = {p.id: (p.state, p.metadata.name, dict(p.labels)) for p in
            daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items}
    ctrs = {c.id: (c.state, c.pod_sandbox_id, c.metadata.name, c.created_at) for c in
            daemon.runtime.ListContainers(pb.ListContainersRequest(), timeout=10).containers}
    return pods, ctrs


def test_restart_keeps_pods_and_reports_exits(daemon, image_ref, tmp_path):  # noqa: F811
    pb = daemon.pb
    pull(daemon, image_ref)
    logs = tmp_path / "logs"
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = pod_config(pb, "keep", log_dir=str(logs), labels={"r": "1"})
    pod = run_pod(daemon, cfg)
    mount = pb.Mount(container_path="/shared", host_path=str(shared))
    runner = create(daemon, pod, cfg, container_config(
        pb, "runner", image_ref, command=["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"],
        log_path="runner.log"))
    quitter = create(daemon, pod, cfg, container_config(
        pb, "quitter", image_ref, command=["sh", "-c", "while [ ! -f /shared/quit ]; do sleep 0.05; done; exit 5"],
        mounts=[mount]))
    waiting = create(daemon, pod, cfg, container_config(pb, "waiting", image_ref, command=["sleep", "1000"]))
    done = create(daemon, pod, cfg, container_config(pb, "done", image_ref, command=["sh", "-c", "exit 2"]))
    for c in (runner, quitter, done):
        start(daemon, c)
    wait_state(daemon, done, pb.CONTAINER_EXITED)
    stopped_cfg = pod_config(pb, "stopped")
    stopped = run_pod(daemon, stopped_cfg)
    daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=stopped), timeout=30)
    runner_pid = info_json(daemon.runtime.ContainerStatus(
        pb.ContainerStatusRequest(container_id=runner, verbose=True), timeout=10))["pid"]
    before_pods, before_ctrs = snapshot(daemon)
    quitter_before = status(daemon, quitter)

    daemon.kill()
    # While the daemon is down: one container exits, the others go on.
    (shared / "quit").write_text("now")
    exit_file = os.path.join(daemon.state_dir, "exits", quitter)
    wait_for(lambda: os.path.exists(exit_file), what="quitter's exit file")
    size = os.path.getsize(logs / "runner.log")
    wait_for(lambda: os.path.getsize(logs / "runner.log") > size, what="runner's log to grow without the daemon")
    daemon.start()

    after_pods, after_ctrs = snapshot(daemon)
    assert after_pods == before_pods
    expected = dict(before_ctrs)
    expected[quitter] = (pb.CONTAINER_EXITED,) + expected[quitter][1:]
    assert after_ctrs == expected
    st = status(daemon, quitter)
    assert st.exit_code == 5 and st.reason == "Error"
    assert st.started_at == quitter_before.started_at and st.finished_at > st.started_at
    assert status(daemon, done).exit_code == 2
    assert pod_status(daemon, pod).status.state == pb.SANDBOX_READY
    assert pod_status(daemon, stopped).status.state == pb.SANDBOX_NOTREADY
    # the running container is the same process and still served
    st = daemon.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=runner, verbose=True), timeout=10)
    assert st.status.state == pb.CONTAINER_RUNNING and info_json(st)["pid"] == runner_pid
    assert exec_sync(daemon, runner, ["echo", "still here"]).stdout == b"still here\n"
    ticks = log_text(read_cri_log(str(logs / "runner.log")))
    assert ticks[:3] == [b"tick 0", b"tick 1", b"tick 2"]
    # a created container can be started after the restart
    start(daemon, waiting)
    assert status(daemon, waiting).state == pb.CONTAINER_RUNNING

    # A second restart while a stop is due: then stop and remove everything.
    daemon.restart()
    assert snapshot(daemon)[0] == before_pods
    # (the shell as PID 1 ignores SIGTERM: this is the SIGKILL after the timeout)
    t0 = time.time()
    daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=runner, timeout=1), timeout=30)
    assert 0.9 < time.time() - t0 < 5
    st = status(daemon, runner)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137
    for p in (pod, stopped):
        daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p), timeout=30)
        daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=30)
    assert snapshot(daemon) == ({}, {})
    for sub in ("sandboxes", "containers", "exits"):
        assert os.listdir(os.path.join(daemon.state_dir, sub)) == [], sub


def test_damaged_records_do_not_crash_status_calls(daemon, image_ref):  # noqa: F811
    """State damaged on disk (a meta.json without shm_path, a container config.pb without its image)
    is loaded after a restart and answered with a status, not a crash (found by fuzz_cri_rpc)."""
    pb = daemon.pb
    pull(daemon, image_ref)
    cfg = pod_config(pb, "damaged")
    pod = run_pod(daemon, cfg)
    ctr = create(daemon, pod, cfg, container_config(pb, "c", image_ref, command=["sleep", "1000"]))
    daemon.kill()
    meta = os.path.join(daemon.state_dir, "sandboxes", pod, "meta.json")
    m = json.load(open(meta))
    m.pop("shm_path", None)
    with open(meta, "w") as f:
        json.dump(m, f)
    cpb = os.path.join(daemon.state_dir, "containers", ctr, "config.pb")
    cc = pb.ContainerConfig()
    cc.ParseFromString(open(cpb, "rb").read())
    cc.ClearField("image")
    with open(cpb, "wb") as f:
        f.write(cc.SerializeToString())
    daemon.start()
    st = daemon.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True), timeout=10)
    assert st.status.id == pod and json.loads(st.info["info"])["shm"] == ""
    cs = daemon.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=ctr, verbose=True), timeout=10)
    assert cs.status.id == ctr and cs.status.image.image == ""
    assert daemon.proc.poll() is None  # still up
