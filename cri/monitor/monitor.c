/* vgpu-monitor: the per-container monitor (like cri-o's conmon). It runs `runc create`, becomes the
 * container's reaper (child subreaper), owns the container's stdout/stderr pipes and writes them to
 * the CRI log file, and on exit records the exit status atomically in the exit file. It detaches
 * from the daemon (new session, not the daemon's child), so containers outlive daemon restarts.
 *
 * Protocol with the daemon: fd 3 is a pipe; the monitor writes "OK <container pid>\n" once the
 * container is created, or "ERR <message>\n" if runc create failed, then closes it.
 * SIGUSR1 reopens the log file (kubelet's log rotation).
 *
 * CRI log format, one record per line: "<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n"; a line
 * longer than 16 KiB is split into 16 KiB records tagged P, the last one F; output without a newline
 * is written as a P record once nothing more came for 100 ms (or at exit), so lines written at once
 * are split deterministically and prompts still show up.
 *
 * Exit file (JSON, written with temp + fsync + rename):
 *   {"exit_code": <0-255, 128+signal for a signal>, "signal": <n or 0>, "finished_at": <unix ns>}
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 16384
#define SYNC_FD 3
#define PARTIAL_FLUSH_MS 100

struct opts {
	const char *id, *runtime, *root, *bundle, *log_path, *exit_file, *pid_file, *runtime_log;
};

struct stream {
	const char *name;
	int fd;
	char buf[LOG_LINE_MAX];
	size_t len;
};

static int log_fd = -1;

static void sync_msg(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	for (int i = 0; i < n - 1; i++)
		if (msg[i] == '\n')
			msg[i] = ' ';
	if (write(SYNC_FD, msg, (size_t)n) < 0)
		return;
}

static void write_record(const char *stream, char tag, const char *data, size_t len)
{
	if (log_fd < 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char head[96];
	size_t h = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
	h += (size_t)snprintf(head + h, sizeof(head) - h, ".%09ldZ %s %c ", ts.tv_nsec, stream, tag);
	char rec[sizeof(head) + LOG_LINE_MAX + 1];
	memcpy(rec, head, h);
	memcpy(rec + h, data, len);
	rec[h + len] = '\n';
	/* One write per record (O_APPEND): readers never see half records. Errors (disk full, a
	 * rotated-away file) must not stop the container, so they are dropped. */
	if (write(log_fd, rec, h + len + 1) < 0)
		return;
}

/* Emit the complete lines in s->buf (and a full buffer as a partial record). */
static void stream_flush(struct stream *s, bool eof)
{
	size_t start = 0;
	for (;;) {
		char *nl = memchr(s->buf + start, '\n', s->len - start);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (s->buf + start));
		write_record(s->name, 'F', s->buf + start, n);
		start += n + 1;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	if (s->len == sizeof(s->buf) || (eof && s->len > 0)) {
		write_record(s->name, 'P', s->buf, s->len);
		s->len = 0;
	}
}

/* Returns 0 at EOF, 1 when data was read or the read would block. */
static int stream_read(struct stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0) {
		stream_flush(s, true);
		return 0;
	}
	s->len += (size_t)n;
	stream_flush(s, false);
	return 1;
}

static void open_log(const struct opts *o)
{
	int fd = open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
}

static int write_exit_file(const char *path, int exit_code, int sig)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char text[256];
	int n = snprintf(text, sizeof(text), "{\"exit_code\": %d, \"signal\": %d, \"finished_at\": %lld}\n",
			 exit_code, sig, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
	close(fd);
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Last "msg" of runc's JSON log, for the daemon's error message. */
static void runtime_error(const struct opts *o, char *out, size_t len)
{
	snprintf(out, len, "runc create failed (see %s)", o->runtime_log);
	FILE *f = fopen(o->runtime_log, "re");
	if (!f)
		return;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		char *m = strstr(line, "\"msg\":\"");
		if (!m)
			continue;
		m += 7;
		char *e = m;
		while (*e && !(*e == '"' && e[-1] != '\\'))
			e++;
		*e = '\0';
		snprintf(out, len, "%s", m);
	}
	fclose(f);
}

static pid_t spawn_create(const struct opts *o, int out_w, int err_w)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		_exit(127);
	close(SYNC_FD);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execl(o->runtime, o->runtime, "--root", o->root, "--log", o->runtime_log, "--log-format", "json", "create",
	      "--bundle", o->bundle, "--pid-file", o->pid_file, o->id, (char *)NULL);
	_exit(127);
}

static pid_t read_pid_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	long pid = -1;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = -1;
	fclose(f);
	return (pid_t)pid;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--id")) o->id = v;
		else if (!strcmp(k, "--runtime")) o->runtime = v;
		else if (!strcmp(k, "--root")) o->root = v;
		else if (!strcmp(k, "--bundle")) o->bundle = v;
		else if (!strcmp(k, "--log")) o->log_path = v;
		else if (!strcmp(k, "--exit-file")) o->exit_file = v;
		else if (!strcmp(k, "--pid-file")) o->pid_file = v;
		else if (!strcmp(k, "--runtime-log")) o->runtime_log = v;
		else return -1;
	}
	if (argc % 2 != 1 || !o->id || !o->runtime || !o->root || !o->bundle || !o->log_path || !o->exit_file ||
	    !o->pid_file || !o->runtime_log)
		return -1;
	return 0;
}

/* Serve the container until it exits: log its output, reopen the log on SIGUSR1. */
static int serve(const struct opts *o, pid_t ctr, struct stream *streams, int sfd)
{
	int status = -1;
	bool exited = false;
	int open_streams = 2;
	while (open_streams > 0 || !exited) {
		struct pollfd pfd[3] = { { .fd = sfd, .events = POLLIN } };
		nfds_t n = 1;
		for (int i = 0; i < 2; i++)
			pfd[n++] = (struct pollfd){ .fd = streams[i].fd, .events = POLLIN };
		/* Once the container is gone, other processes of a shared pid namespace may still
		 * hold the pipes: drain for a bounded time only. */
		bool pending = streams[0].len || streams[1].len;
		int timeout = exited ? 200 : pending ? PARTIAL_FLUSH_MS : -1;
		int r = poll(pfd, n, timeout);
		if (r < 0 && errno != EINTR)
			break;
		if (r == 0 && exited)
			break;
		if (r == 0) {
			/* A line without its newline for a while (a prompt, progress output): log what
			 * there is as a partial record rather than hold it back. */
			for (int i = 0; i < 2; i++)
				if (streams[i].len)
					stream_flush(&streams[i], true);
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGUSR1)
					open_log(o);
			}
			int st;
			pid_t p;
			while ((p = waitpid(-1, &st, WNOHANG)) > 0)
				if (p == ctr) {
					status = st;
					exited = true;
				}
		}
		for (int i = 0; i < 2; i++) {
			if (streams[i].fd >= 0 && (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    stream_read(&streams[i]) == 0) {
				close(streams[i].fd);
				streams[i].fd = -1;
				open_streams--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (streams[i].len)
			stream_flush(&streams[i], true);
	if (!exited) {
		while (waitpid(ctr, &status, 0) < 0 && errno == EINTR)
			;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	if (parse_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: vgpu-monitor --id ID --runtime PATH --root DIR --bundle DIR --log FILE "
				"--exit-file FILE --pid-file FILE --runtime-log FILE (sync pipe on fd 3)\n");
		return 2;
	}
	/* Detach: the daemon reaps this first process at once; the monitor lives on in its own
	 * session, re-parented away from the daemon. */
	pid_t pid = fork();
	if (pid < 0) {
		sync_msg("ERR fork monitor: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0)
		_exit(0);
	setsid();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		sync_msg("ERR set child subreaper: %s\n", strerror(errno));
		_exit(1);
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	int out_p[2], err_p[2];
	if (sfd < 0 || pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0) {
		sync_msg("ERR monitor setup: %s\n", strerror(errno));
		_exit(1);
	}
	open_log(&o);
	if (log_fd < 0) {
		sync_msg("ERR open log %s: %s\n", o.log_path, strerror(errno));
		_exit(1);
	}
	pid_t create = spawn_create(&o, out_p[1], err_p[1]);
	close(out_p[1]);
	close(err_p[1]);
	int st;
	if (create < 0 || waitpid(create, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char msg[1024];
		runtime_error(&o, msg, sizeof(msg));
		sync_msg("ERR %s\n", msg);
		_exit(1);
	}
	pid_t ctr = read_pid_file(o.pid_file);
	if (ctr <= 0) {
		sync_msg("ERR runc create wrote no pid to %s\n", o.pid_file);
		_exit(1);
	}
	sync_msg("OK %d %d\n", (int)ctr, (int)getpid());
	close(SYNC_FD);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	for (int i = 0; i < 2; i++)
		fcntl(i == 0 ? out_p[0] : err_p[0], F_SETFL, O_NONBLOCK);
	static struct stream streams[2];
	streams[0] = (struct stream){ .name = "stdout", .fd = out_p[0] };
	streams[1] = (struct stream){ .name = "stderr", .fd = err_p[0] };
	int status = serve(&o, ctr, streams, sfd);
	int exit_code = 255, sig = 0;
	if (status >= 0 && WIFEXITED(status))
		exit_code = WEXITSTATUS(status);
	else if (status >= 0 && WIFSIGNALED(status)) {
		sig = WTERMSIG(status);
		exit_code = 128 + sig;
	}
	if (write_exit_file(o.exit_file, exit_code, sig) < 0)
		_exit(1);
	_exit(0);
}
