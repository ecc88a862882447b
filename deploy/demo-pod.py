#!/usr/bin/python3
"""Demo pod for the quick start: starts a local registry (Debian's docker-registry) on 127.0.0.1,
pushes a busybox image built from /bin/busybox (busybox-static), then through the CRI pulls it,
runs a pod with one container on the runc handler, waits for it and prints its log. The pod is
left in place (`crictl pods` shows it); --cleanup removes it. Uses the test suite's registry helper.

    deploy/demo-pod.py --socket /run/vgpu-cri/vgpu-cri.sock
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

top = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(top, "test", "integration"))
import registry as R  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--socket", default="/run/vgpu-cri/vgpu-cri.sock")
ap.add_argument("--log-dir", default="/var/log/pods/vgpu-demo")
ap.add_argument("--cleanup", action="store_true", help="stop and remove the pod at the end")
args = ap.parse_args()

stubs = tempfile.mkdtemp(prefix="vgpu-demo-")
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(top, "proto"),
                "--python_out=" + stubs, "--grpc_python_out=" + stubs, "cri-api.proto"], check=True)
sys.path.insert(0, stubs)
import grpc  # noqa: E402
import cri_api_pb2 as pb  # noqa: E402
import cri_api_pb2_grpc as pbg  # noqa: E402

channel = grpc.insecure_channel("unix://" + args.socket)
rt, im = pbg.RuntimeServiceStub(channel), pbg.ImageServiceStub(channel)

workdir = tempfile.mkdtemp(prefix="vgpu-demo-registry-")
reg = R.Registry(workdir)
try:
    layer = R.Tar().dir("bin").dir("etc").dir("tmp", 0o1777)
    layer.host_file("bin/busybox", R.BUSYBOX, 0o755)
    for app in ("sh", "echo", "cat", "uname", "hostname", "id", "sleep", "ls", "date"):
        layer.symlink("bin/" + app, "busybox")
    layer.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    reg.push_image("demo/busybox", "latest", [layer.bytes()], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    ref = "%s/demo/busybox:latest" % reg.host
    t0 = time.time()
    image_id = im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120).image_ref
    print("demo: pulled %s (%s) in %.0f ms" % (ref, image_id[:19], (time.time() - t0) * 1000))
finally:
    reg.stop()
    shutil.rmtree(workdir, ignore_errors=True)

attempt = int(time.time())
cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="vgpu-demo", namespace="default",
                                                         uid="vgpu-demo-%d" % attempt),
                          hostname="vgpu-demo", log_directory="%s/%d" % (args.log_dir, attempt), labels={"app": "vgpu-demo"})
t0 = time.time()
pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler="runc"), timeout=60).pod_sandbox_id
script = ('echo "hello from a vgpu-cri pod"; echo "hostname: $(hostname)"; echo "kernel: $(uname -r)"; '
          'echo "user: $(id)"; echo "files: $(ls /)"; echo "to stderr" >&2')
ctr = rt.CreateContainer(pb.CreateContainerRequest(
    pod_sandbox_id=pod, sandbox_config=cfg,
    config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="hello"), image=pb.ImageSpec(image=ref),
                              command=["sh", "-c", script], log_path="hello/0.log")), timeout=60).container_id
rt.StartContainer(pb.StartContainerRequest(container_id=ctr), timeout=60)
print("demo: pod %s, container %s started in %.0f ms" % (pod[:13], ctr[:13], (time.time() - t0) * 1000))
deadline = time.time() + 30
while True:
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=ctr), timeout=10).status
    if st.state == pb.CONTAINER_EXITED or time.time() > deadline:
        break
    time.sleep(0.05)
print("demo: container exited with code %d (%s); its log %s:" % (st.exit_code, st.reason, st.log_path))
with open(st.log_path) as f:
    sys.stdout.write("".join("  " + line for line in f))
if args.cleanup:
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    print("demo: pod removed")
else:
    print("demo: pod %s left in place (remove it with: crictl stopp %s; crictl rmp %s)" % (pod[:13], pod[:13], pod[:13]))
shutil.rmtree(stubs, ignore_errors=True)
sys.exit(0 if st.state == pb.CONTAINER_EXITED and st.exit_code == 0 else 1)
