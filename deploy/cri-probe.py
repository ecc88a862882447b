#!/usr/bin/python3
"""A tiny independent CRI client: prints what `crictl version` and `crictl info` would show.
Stubs are generated from proto/cri-api.proto with grpc_tools into a temp dir."""
import argparse
import os
import subprocess
import sys
import tempfile

top = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ap = argparse.ArgumentParser()
ap.add_argument("--socket", default="/run/vgpu-cri/vgpu-cri.sock")
args = ap.parse_args()
stubs = tempfile.mkdtemp(prefix="vgpu-probe-")
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(top, "proto"),
                "--python_out=" + stubs, "--grpc_python_out=" + stubs, "cri-api.proto"], check=True)
sys.path.insert(0, stubs)
import grpc  # noqa: E402
import cri_api_pb2 as pb  # noqa: E402
import cri_api_pb2_grpc as pbg  # noqa: E402

rt = pbg.RuntimeServiceStub(grpc.insecure_channel("unix://" + args.socket))
v = rt.Version(pb.VersionRequest(), timeout=10)
print("RuntimeName: %s\nRuntimeVersion: %s\nRuntimeApiVersion: %s" % (v.runtime_name, v.runtime_version,
                                                                   v.runtime_api_version))
st = rt.Status(pb.StatusRequest(), timeout=10)
for c in st.status.conditions:
    print("Condition %s=%s %s %s" % (c.type, c.status, c.reason, c.message))
print("Handlers: %s" % ", ".join(h.name for h in st.runtime_handlers))
