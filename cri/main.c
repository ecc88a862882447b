/* vgpu-cri: the daemon's entry point. Parses flags and config, prepares the socket, starts the
 * gRPC server and waits for SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "grpc_server.h"
#include "log.h"
#include "runtime_service.h"
#include "socket.h"
#include "util.h"

#ifndef VGPU_VERSION
#define VGPU_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: vgpu-cri [options]\n"
		"A Kubernetes CRI runtime: pods as Xen domUs (or namespaces) sharing GPUs through a broker.\n\n"
		"  -c, --config PATH           config file (default " VGPU_DEFAULT_CONFIG_PATH
		"; missing default = built-in defaults)\n"
		"  -s, --socket PATH           override the config's socket\n"
		"  -l, --log-level LEVEL       override the config's log_level (error, warn, info, debug)\n"
		"      --print-default-config  print a complete commented config and exit\n"
		"      --check-config          load the config, report errors and exit\n"
		"  -v, --version               print the version and exit\n"
		"  -h, --help                  this help\n");
}

enum { OPT_PRINT_DEFAULT = 256, OPT_CHECK_CONFIG };

struct options {
	const char *config_path;
	const char *socket;
	const char *log_level;
	bool check_only;
};

/* Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "print-default-config", no_argument, NULL, OPT_PRINT_DEFAULT },
		{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:s:l:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config_path = optarg;
			break;
		case 's':
			o->socket = optarg;
			break;
		case 'l':
			o->log_level = optarg;
			break;
		case OPT_PRINT_DEFAULT: {
			struct vgpu_config cfg;
			vgpu_config_defaults(&cfg);
			vgpu_config_print(&cfg, stdout);
			vgpu_config_free(&cfg);
			return 0;
		}
		case OPT_CHECK_CONFIG:
			o->check_only = true;
			break;
		case 'v':
			printf("%s %s (CRI %s)\n", VGPU_RUNTIME_NAME, VGPU_VERSION, VGPU_RUNTIME_API_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vgpu-cri: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

static int load_config(const struct options *o, struct vgpu_config *cfg, struct vgpu_err *err)
{
	vgpu_config_defaults(cfg);
	/* The default path may be absent (built-in defaults); a path given explicitly must exist. */
	int r = vgpu_config_load(cfg, o->config_path ? o->config_path : VGPU_DEFAULT_CONFIG_PATH, !o->config_path, err);
	if (r < 0)
		return r;
	if (o->socket) {
		if (o->socket[0] != '/' || strlen(o->socket) >= 100)
			return vgpu_err_set(err, -EINVAL, "--socket: '%s' must be an absolute path shorter than 100 bytes",
					    o->socket);
		free(cfg->socket_path);
		cfg->socket_path = vgpu_strdup(o->socket);
	}
	if (o->log_level) {
		if (vgpu_log_level_parse(o->log_level) < 0)
			return vgpu_err_set(err, -EINVAL, "--log-level: '%s' is not one of error, warn, info, debug",
					    o->log_level);
		free(cfg->log_level);
		cfg->log_level = vgpu_strdup(o->log_level);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	int rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;

	struct vgpu_err err;
	vgpu_err_clear(&err);
	struct vgpu_config cfg;
	if (load_config(&o, &cfg, &err) < 0) {
		fprintf(stderr, "vgpu-cri: %s\n", err.msg);
		vgpu_config_free(&cfg);
		return 1;
	}
	if (o.check_only) {
		printf("%s: ok\n", cfg.path);
		vgpu_config_free(&cfg);
		return 0;
	}
	vgpu_log_set_level((enum vgpu_log_level)vgpu_log_level_parse(cfg.log_level));

	/* Signals are taken synchronously by this thread; every thread created later inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lock_fd = -1;
	struct vgpu_daemon d;
	struct vgpu_grpc_server *server = NULL;
	rc = 1;
	if (vgpu_socket_prepare(cfg.socket_path, &lock_fd, &err) < 0) {
		vgpu_log(VGPU_LOG_ERROR, "%s", err.msg);
		vgpu_config_free(&cfg);
		return 1;
	}
	if (vgpu_daemon_init(&d, &cfg, &err) < 0) {
		vgpu_log(VGPU_LOG_ERROR, "%s", err.msg);
		goto out;
	}
	vgpu_log(VGPU_LOG_INFO, "vgpu-cri %s starting (config %s, state %s)", VGPU_VERSION, cfg.path, cfg.state_dir);
	if (vgpu_grpc_server_start(&d, &server, &err) < 0) {
		vgpu_log(VGPU_LOG_ERROR, "%s", err.msg);
		vgpu_daemon_fini(&d);
		goto out;
	}
	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;
	vgpu_log(VGPU_LOG_INFO, "received %s: shutting down (in-flight calls get %llds)", strsignal(sig),
		 cfg.shutdown_timeout_s);
	atomic_store(&d.shutting_down, true);
	if (!vgpu_grpc_server_stop(server, cfg.shutdown_timeout_s)) {
		/* Handlers still run on daemon state: exit without tearing it down under them. */
		unlink(cfg.socket_path);
		vgpu_log(VGPU_LOG_WARN, "vgpu-cri stopped with calls still running");
		_exit(0);
	}
	vgpu_daemon_fini(&d);
	unlink(cfg.socket_path);
	vgpu_log(VGPU_LOG_INFO, "vgpu-cri stopped");
	rc = 0;
out:
	close(lock_fd);
	vgpu_config_free(&cfg);
	return rc;
}
