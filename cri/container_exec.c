/* ExecSync (runc exec with captured output and a deadline, used by kubelet's exec probes) and
 * ReopenContainerLog (asks the container's monitor to reopen its log file after rotation). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "container.h"
#include "daemon.h"
#include "log.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_container.h"

#define EXEC_MAX_ARGS 240
#define EXEC_MAX_ARG_BYTES (128 << 10)

static int running_container(struct vgpu_pod_manager *m, const char *id, struct vgpu_container **out,
			     struct vgpu_err *err)
{
	struct vgpu_container *c;
	int r = vgpu_container_get(m, id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	bool running = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
	pthread_mutex_unlock(&m->lock);
	if (!running) {
		vgpu_container_put(m, c);
		return vgpu_err_set(err, -EBUSY, "container %s is not running", id);
	}
	*out = c;
	return 0;
}

int vgpu_rpc_exec_sync(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
		       struct vgpu_err *err)
{
	const Runtime__V1__ExecSyncRequest *req = (const Runtime__V1__ExecSyncRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	if (req->n_cmd == 0 || req->n_cmd > EXEC_MAX_ARGS)
		return vgpu_err_set(err, -EINVAL, "container %.80s: exec: %zu arguments (1..%d)", req->container_id,
				    req->n_cmd, EXEC_MAX_ARGS);
	size_t total = 0;
	for (size_t i = 0; i < req->n_cmd; i++)
		total += strlen(req->cmd[i]);
	if (total > EXEC_MAX_ARG_BYTES)
		return vgpu_err_set(err, -EINVAL, "container %.80s: exec: command too long", req->container_id);
	if (req->timeout < 0 || req->timeout > 86400)
		return vgpu_err_set(err, -EINVAL, "container %.80s: exec: timeout %lld out of range", req->container_id,
				    (long long)req->timeout);
	struct vgpu_container *c;
	int r = running_container(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	char **argv = vgpu_calloc(req->n_cmd + 1, sizeof(char *));
	for (size_t i = 0; i < req->n_cmd; i++)
		argv[i] = req->cmd[i];
	struct vgpu_proc_result res;
	if (c->xen)
		r = vgpu_xen_container_exec(m, c, argv, req->timeout * 1000, &res, err);
	else
		r = vgpu_runc_exec(&m->runc, c->id, argv, req->timeout * 1000, m->tmp_dir, &res, err);
	free(argv);
	if (r == 0 && res.timed_out)
		r = vgpu_err_set(err, -ETIMEDOUT, "container %s: exec '%.100s' timed out after %llds (killed)", c->id,
				 req->cmd[0], (long long)req->timeout);
	if (r == 0) {
		Runtime__V1__ExecSyncResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__exec_sync_response__init(out);
		out->stdout.data = (uint8_t *)steal_pointer(&res.out);
		out->stdout.len = res.out_len;
		out->stderr.data = (uint8_t *)steal_pointer(&res.errout);
		out->stderr.len = res.err_len;
		if (WIFEXITED(res.status))
			out->exit_code = WEXITSTATUS(res.status);
		else if (WIFSIGNALED(res.status))
			out->exit_code = 128 + WTERMSIG(res.status);
		*resp = &out->base;
	}
	if (r == 0 || r == -ETIMEDOUT)
		vgpu_proc_result_free(&res);
	vgpu_container_put(m, c);
	return r;
}

int vgpu_rpc_reopen_container_log(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				  struct vgpu_err *err)
{
	const Runtime__V1__ReopenContainerLogRequest *req = (const Runtime__V1__ReopenContainerLogRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = running_container(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	pid_t mon = c->monitor_pid;
	unsigned long long start = c->monitor_start;
	pthread_mutex_unlock(&m->lock);
	if (!*c->log_path) {
		r = vgpu_err_set(err, -EBUSY, "container %s has no log path", c->id);
	} else if (c->xen) { /* the pump opens the log for every copy: a new file is all it takes */
		int fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			r = vgpu_err_errno(err, errno, "container %s: reopen %s", c->id, c->log_path);
		else
			close(fd);
	} else if (!vgpu_proc_alive(mon, start) || kill(mon, SIGUSR1) < 0) {
		r = vgpu_err_set(err, -EBUSY, "container %s: its monitor is gone", c->id);
	} else {
		/* The monitor reopens (creating the file) when it handles the signal. */
		struct stat st;
		int i;
		for (i = 0; i < 200 && stat(c->log_path, &st) < 0; i++)
			usleep(5000);
		if (i == 200)
			r = vgpu_err_set(err, -ETIMEDOUT, "container %s: log %s not reopened in 1s", c->id, c->log_path);
	}
	vgpu_container_put(m, c);
	if (r == 0) {
		Runtime__V1__ReopenContainerLogResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__reopen_container_log_response__init(out);
		*resp = &out->base;
	}
	return r;
}
