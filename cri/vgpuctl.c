/* vgpuctl: the operator's view of GPU pods. `vgpuctl top` shows each GPU pod's usage, refreshed
 * every second like top(1), from the daemon's CRI ListPodSandboxMetrics RPC on its socket. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cri-api.pb-c.h"
#include "cri_client.h"

#define DEFAULT_SOCKET "/run/vgpu-cri/vgpu-cri.sock"

/* One unary call; returns the decoded reply or NULL with a message on stderr. */
static ProtobufCMessage *unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *reply_desc)
{
	int status;
	char *details = NULL;
	ProtobufCMessage *reply = vgpu_cri_unary(ch, method, req, reply_desc, 10, &status, &details);
	if (!reply)
		fprintf(stderr, "vgpuctl: %s: status %d: %s\n", method, status, details ? details : "");
	free(details);
	return reply;
}

static unsigned long long metric(const Runtime__V1__PodSandboxMetrics *pm, const char *name)
{
	for (size_t i = 0; i < pm->n_metrics; i++)
		if (strcmp(pm->metrics[i]->name, name) == 0 && pm->metrics[i]->value)
			return (unsigned long long)pm->metrics[i]->value->value;
	return 0;
}

static const char *label(const Runtime__V1__PodSandboxMetrics *pm, size_t idx)
{
	if (pm->n_metrics && pm->metrics[0]->n_label_values > idx)
		return pm->metrics[0]->label_values[idx];
	return "?";
}

static void human(char *out, size_t len, unsigned long long bytes)
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f%s" : "%.0f%s", v, units[u]);
}

static int top_once(grpc_channel *ch, bool clear)
{
	Runtime__V1__ListPodSandboxMetricsRequest req = RUNTIME__V1__LIST_POD_SANDBOX_METRICS_REQUEST__INIT;
	Runtime__V1__ListPodSandboxMetricsResponse *r = (Runtime__V1__ListPodSandboxMetricsResponse *)unary(
		ch, "/runtime.v1.RuntimeService/ListPodSandboxMetrics", &req.base,
		&runtime__v1__list_pod_sandbox_metrics_response__descriptor);
	if (!r)
		return 1;
	if (clear)
		fputs("\033[H\033[2J", stdout);
	time_t now = time(NULL);
	char ts[32];
	strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
	printf("vgpuctl top - %s - %zu GPU pod(s)\n", ts, r->n_pod_metrics);
	printf("%-16s %-20s %-13s %10s %10s %10s %4s %9s %9s %8s %10s %10s %9s %6s\n", "NAMESPACE", "POD", "SANDBOX",
	       "MEM", "LIMIT", "PEAK", "SHR%", "LAUNCHES", "BUSY(s)", "WAIT(s)", "HTOD", "DTOH", "CALLS", "ERRORS");
	for (size_t i = 0; i < r->n_pod_metrics; i++) {
		const Runtime__V1__PodSandboxMetrics *pm = r->pod_metrics[i];
		char mem[16], lim[16], peak[16], htod[16], dtoh[16];
		human(mem, sizeof(mem), metric(pm, "vgpu_gpu_memory_used_bytes"));
		unsigned long long limit = metric(pm, "vgpu_gpu_memory_limit_bytes");
		if (limit)
			human(lim, sizeof(lim), limit);
		else
			snprintf(lim, sizeof(lim), "-");
		human(peak, sizeof(peak), metric(pm, "vgpu_gpu_memory_peak_bytes"));
		human(htod, sizeof(htod), metric(pm, "vgpu_gpu_htod_bytes_total"));
		human(dtoh, sizeof(dtoh), metric(pm, "vgpu_gpu_dtoh_bytes_total"));
		printf("%-16.16s %-20.20s %-13.13s %10s %10s %10s %4llu %9llu %9.3f %8.3f %10s %10s %9llu %6llu\n",
		       label(pm, 0), label(pm, 1), pm->pod_sandbox_id, mem, lim, peak,
		       metric(pm, "vgpu_gpu_compute_share_percent"), metric(pm, "vgpu_gpu_kernel_launches_total"),
		       (double)metric(pm, "vgpu_gpu_busy_nanoseconds_total") / 1e9,
		       (double)metric(pm, "vgpu_gpu_share_wait_nanoseconds_total") / 1e9, htod, dtoh,
		       metric(pm, "vgpu_gpu_api_calls_total"), metric(pm, "vgpu_gpu_api_errors_total"));
	}
	fflush(stdout);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "Usage: vgpuctl [--socket PATH] top [--once] [--iterations N] [--interval SECONDS]\n"
		     "Shows each GPU pod's usage (memory, launches, GPU busy time, time waited for other pods' GPU\n"
		     "turns under compute shares, copies, calls) from vgpu-cri.\n"
		     "  --socket PATH   the daemon's CRI socket (default " DEFAULT_SOCKET ")\n");
}

int main(int argc, char **argv)
{
	const char *sock = DEFAULT_SOCKET;
	int once = 0;
	long iterations = -1;
	double interval = 1.0;
	static const struct option opts[] = { { "socket", required_argument, NULL, 's' },
					      { "once", no_argument, NULL, 'o' },
					      { "iterations", required_argument, NULL, 'n' },
					      { "interval", required_argument, NULL, 'i' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "s:on:i:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'o':
			once = 1;
			break;
		case 'n':
			iterations = strtol(optarg, NULL, 10);
			break;
		case 'i':
			interval = strtod(optarg, NULL);
			if (interval < 0.1)
				interval = 0.1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "top") != 0) {
		usage(stderr);
		return 2;
	}
	if (once)
		iterations = 1;
	grpc_init();
	char *target = NULL;
	if (asprintf(&target, "unix:%s", sock) < 0)
		return 1;
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	free(target);
	int rc = 0;
	bool tty = isatty(STDOUT_FILENO);
	for (long i = 0; iterations < 0 || i < iterations; i++) {
		if (i > 0) {
			struct timespec ts = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
			nanosleep(&ts, NULL);
		}
		rc = top_once(ch, tty && iterations != 1);
		if (rc)
			break;
	}
	grpc_channel_destroy(ch);
	grpc_shutdown();
	return rc;
}
