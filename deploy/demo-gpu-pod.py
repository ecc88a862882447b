#!/usr/bin/python3
"""GPU demo for the quick start: a pod that asks for a GPU (vgpu.io/gpu annotations) runs the CUDA
driver-API program vector_add through libvgpu.so, then `vgpuctl top` shows the pod's usage. The
image is built from test/gpu's programs (the image-building code of test_gpu_pods.py) and pushed
to a local registry (Debian's docker-registry). On a machine without a GPU the daemon must run the
broker's soft TEST DEVICE (gpu.backend: soft), and vector_add's output says so.

    deploy/demo-gpu-pod.py --socket /run/vgpu-cri/vgpu-cri.sock
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
os.environ.setdefault("VGPU_SOURCE_DIR", top)
os.environ.setdefault("VGPU_BUILD_DIR", os.path.join(top, "build"))
import registry as R  # noqa: E402
import test_gpu_pods as G  # noqa: E402  (its image builder; also generates the CRI stubs)
from conftest import _pb as pb, _pb_grpc as pbg  # noqa: E402
import grpc  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--socket", default="/run/vgpu-cri/vgpu-cri.sock")
ap.add_argument("--log-dir", default="/var/log/pods/vgpu-gpu-demo")
args = ap.parse_args()

channel = grpc.insecure_channel("unix://" + args.socket)
rt, im = pbg.RuntimeServiceStub(channel), pbg.ImageServiceStub(channel)

workdir = tempfile.mkdtemp(prefix="vgpu-gpu-demo-registry-")
reg = R.Registry(workdir)
try:
    reg.push_image("demo/cuda", "latest", [G.gpu_image_layer()],
                   config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})
    ref = "%s/demo/cuda:latest" % reg.host
    im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
finally:
    reg.stop()
    shutil.rmtree(workdir, ignore_errors=True)

attempt = int(time.time())
cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="vgpu-gpu-demo", namespace="default",
                                                         uid="vgpu-gpu-demo-%d" % attempt),
                          hostname="vgpu-gpu-demo", log_directory="%s/%d" % (args.log_dir, attempt),
                          annotations={"vgpu.io/gpu": "true", "vgpu.io/gpu-memory": "256Mi",
                                       "vgpu.io/gpu-compute": "50"})
try:
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler="runc"), timeout=60).pod_sandbox_id
except grpc.RpcError as e:
    print("gpu-demo: the GPU pod was refused: %s" % e.details())
    sys.exit(1)
envs = [pb.KeyValue(key=k, value=v.encode()) for k, v in G.GPU_ENV.items()]
ctr = rt.CreateContainer(pb.CreateContainerRequest(
    pod_sandbox_id=pod, sandbox_config=cfg,
    config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="vector-add"), image=pb.ImageSpec(image=ref),
                              command=["/bin/vector_add"], envs=envs, log_path="vector-add/0.log")),
    timeout=60).container_id
rt.StartContainer(pb.StartContainerRequest(container_id=ctr), timeout=60)
deadline = time.time() + 60
while True:
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=ctr), timeout=10).status
    if st.state == pb.CONTAINER_EXITED or time.time() > deadline:
        break
    time.sleep(0.1)
print("gpu-demo: GPU pod %s ran vector_add through libvgpu.so: exit code %d; its log:" % (pod[:13], st.exit_code))
with open(st.log_path) as f:
    sys.stdout.write("".join("  " + line for line in f))
print("gpu-demo: vgpuctl top --once:")
subprocess.run([os.path.join(os.environ["VGPU_BUILD_DIR"], "cri", "vgpuctl"), "--socket", args.socket, "top", "--once"])
print("gpu-demo: pod %s left in place (crictl stopp %s; crictl rmp %s)" % (pod[:13], pod[:13], pod[:13]))
sys.exit(0 if st.exit_code == 0 else 1)
