"""Exec / Attach / PortForward through the real daemon's gRPC: request validation and the
streaming server's lifecycle inside vgpu-cri. (The protocol itself is covered against the test
backend in test_streaming.py; which backend the daemon uses is the pods code's.)"""
import grpc
import pytest


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def test_exec_validation(daemon, pb):
    code, msg = code_of(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id="c", cmd=["sh"], tty=True,
                                                                    stdout=True, stderr=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tty and stderr" in msg
    code, msg = code_of(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id="c", cmd=["sh"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "one of stdin, stdout, or stderr" in msg
    code, msg = code_of(lambda: daemon.runtime.Exec(pb.ExecRequest(cmd=["sh"], stdout=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "container_id" in msg


def test_exec_unknown_container(daemon, pb):
    code, msg = code_of(lambda: daemon.runtime.Exec(pb.ExecRequest(container_id="nope", cmd=["true"],
                                                                    stdout=True)))
    # the pods backend (container_stream.c) knows no such container
    assert code == grpc.StatusCode.NOT_FOUND, (code, msg)


def test_attach_and_port_forward_validation(daemon, pb):
    code, msg = code_of(lambda: daemon.runtime.Attach(pb.AttachRequest(container_id="", stdout=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: daemon.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pod_sandbox_id" in msg
    code, msg = code_of(lambda: daemon.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id="p", port=[0])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "invalid port" in msg
