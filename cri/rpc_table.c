/* Every RPC of RuntimeService and ImageService and the C function that serves it (see rpc.h).
 * A NULL handler answers UNIMPLEMENTED with the RPC's name. FAST rows are served by threads that
 * slow RPCs cannot occupy. */
#include "container.h"
#include "gpu.h"
#include "image_service.h"
#include "rpc.h"
#include "runtime_service.h"
#include "sandbox.h"
#include "streaming.h"

#define RT "RuntimeService"
#define IM "ImageService"
#define UNARY(svc, name, cls, fn) { svc, name, cls, fn, NULL }
#define STREAM(svc, name, fn) { svc, name, VGPU_RPC_STREAM, NULL, fn }

const struct vgpu_rpc vgpu_rpc_table[] = {
	UNARY(RT, "Version", VGPU_RPC_FAST, vgpu_rpc_version),
	UNARY(RT, "RunPodSandbox", VGPU_RPC_SLOW, vgpu_rpc_run_pod_sandbox),
	UNARY(RT, "StopPodSandbox", VGPU_RPC_SLOW, vgpu_rpc_stop_pod_sandbox),
	UNARY(RT, "RemovePodSandbox", VGPU_RPC_SLOW, vgpu_rpc_remove_pod_sandbox),
	UNARY(RT, "PodSandboxStatus", VGPU_RPC_FAST, vgpu_rpc_pod_sandbox_status),
	UNARY(RT, "ListPodSandbox", VGPU_RPC_FAST, vgpu_rpc_list_pod_sandbox),
	STREAM(RT, "StreamPodSandboxes", NULL),
	UNARY(RT, "CreateContainer", VGPU_RPC_SLOW, vgpu_rpc_create_container),
	UNARY(RT, "StartContainer", VGPU_RPC_SLOW, vgpu_rpc_start_container),
	UNARY(RT, "StopContainer", VGPU_RPC_SLOW, vgpu_rpc_stop_container),
	UNARY(RT, "RemoveContainer", VGPU_RPC_SLOW, vgpu_rpc_remove_container),
	UNARY(RT, "ListContainers", VGPU_RPC_FAST, vgpu_rpc_list_containers),
	STREAM(RT, "StreamContainers", NULL),
	UNARY(RT, "ContainerStatus", VGPU_RPC_FAST, vgpu_rpc_container_status),
	UNARY(RT, "UpdateContainerResources", VGPU_RPC_SLOW, vgpu_rpc_update_container_resources),
	UNARY(RT, "ReopenContainerLog", VGPU_RPC_SLOW, vgpu_rpc_reopen_container_log),
	UNARY(RT, "ExecSync", VGPU_RPC_SLOW, vgpu_rpc_exec_sync),
	UNARY(RT, "Exec", VGPU_RPC_SLOW, vgpu_rpc_exec),
	UNARY(RT, "Attach", VGPU_RPC_SLOW, vgpu_rpc_attach),
	UNARY(RT, "PortForward", VGPU_RPC_SLOW, vgpu_rpc_port_forward),
	UNARY(RT, "ContainerStats", VGPU_RPC_SLOW, vgpu_rpc_container_stats),
	UNARY(RT, "ListContainerStats", VGPU_RPC_SLOW, vgpu_rpc_list_container_stats),
	STREAM(RT, "StreamContainerStats", NULL),
	UNARY(RT, "PodSandboxStats", VGPU_RPC_SLOW, vgpu_rpc_pod_sandbox_stats),
	UNARY(RT, "ListPodSandboxStats", VGPU_RPC_SLOW, vgpu_rpc_list_pod_sandbox_stats),
	STREAM(RT, "StreamPodSandboxStats", NULL),
	UNARY(RT, "UpdateRuntimeConfig", VGPU_RPC_FAST, vgpu_rpc_update_runtime_config),
	UNARY(RT, "Status", VGPU_RPC_FAST, vgpu_rpc_status),
	UNARY(RT, "CheckpointContainer", VGPU_RPC_SLOW, NULL),
	STREAM(RT, "GetContainerEvents", vgpu_rpc_get_container_events),
	UNARY(RT, "ListMetricDescriptors", VGPU_RPC_FAST, vgpu_rpc_list_metric_descriptors),
	UNARY(RT, "ListPodSandboxMetrics", VGPU_RPC_FAST, vgpu_rpc_list_pod_sandbox_metrics),
	STREAM(RT, "StreamPodSandboxMetrics", NULL),
	UNARY(RT, "RuntimeConfig", VGPU_RPC_FAST, vgpu_rpc_runtime_config),
	UNARY(RT, "UpdatePodSandboxResources", VGPU_RPC_SLOW, NULL),
	UNARY(IM, "ListImages", VGPU_RPC_FAST, vgpu_rpc_list_images),
	STREAM(IM, "StreamImages", NULL),
	UNARY(IM, "ImageStatus", VGPU_RPC_FAST, vgpu_rpc_image_status),
	UNARY(IM, "PullImage", VGPU_RPC_SLOW, vgpu_rpc_pull_image),
	UNARY(IM, "RemoveImage", VGPU_RPC_SLOW, vgpu_rpc_remove_image),
	UNARY(IM, "ImageFsInfo", VGPU_RPC_FAST, vgpu_rpc_image_fs_info),
};

const size_t vgpu_rpc_table_len = sizeof(vgpu_rpc_table) / sizeof(vgpu_rpc_table[0]);
