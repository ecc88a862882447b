/* vgpu-monitor: the per-container monitor (like cri-o's conmon). It runs `runc create`, becomes the
 * container's reaper (child subreaper), owns the container's stdout/stderr pipes and writes them to
 * the CRI log file, and on exit records the exit status atomically in the exit file. It detaches
 * from the daemon (new session, not the daemon's child), so containers outlive daemon restarts.
 *
 * Protocol with the daemon: fd 3 is a pipe; the monitor writes "OK <container pid> <monitor pid>\n"
 * once the container is created, or "ERR <message>\n" if runc create failed, then closes it.
 * SIGUSR1 reopens the log file (kubelet's log rotation).
 *
 * Stdio of the container: without --tty, pipes for stdout and stderr, stdin /dev/null, or with
 * --stdin 1 a pipe whose write end the monitor keeps. With --tty 1 (the spec has terminal: true)
 * runc makes the pty inside the container and hands us its master over --console-socket; its
 * output is logged as stdout. Either way the monitor serves attach clients on <bundle>/attach
 * (monitor_attach.c, protocol in attach_proto.h); --stdin-once 1 closes the container's stdin
 * when the first client that brought stdin is done with it.
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
#include <sys/syscall.h>
#include <linux/openat2.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attach_proto.h"
#include "monitor_attach.h"

#define LOG_LINE_MAX 16384
#define SYNC_FD 3
#define PARTIAL_FLUSH_MS 100
#define CONSOLE_WAIT_MS 5000
#define ATTACH_FLUSH_MS 500
#define CONSOLE_SOCKET "console.sock"

struct opts {
	const char *id, *runtime, *root, *bundle, *log_path, *exit_file, *pid_file, *runtime_log;
	const char *log_dir; /* the pod's log directory: log_path is opened beneath it, no symlinks */
	bool tty, stdin, stdin_once;
};

struct stream {
	const char *name;
	int index; /* 0 stdout, 1 stderr (for attach clients) */
	int fd;
	char buf[LOG_LINE_MAX];
	size_t len;
};

static int log_fd = -1;
static struct attach_server *attach_srv;

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
	attach_output(attach_srv, s->index, s->buf + s->len, (size_t)n);
	s->len += (size_t)n;
	stream_flush(s, false);
	return 1;
}

/* The log may sit where the container can write (a pod whose log directory is mounted in it):
 * a symlink put there must not make us write into another file. Beneath the pod's log directory
 * no component may be a symlink; the file itself is never followed. */
static int open_log_file(const struct opts *o)
{
	int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
	size_t n = o->log_dir ? strlen(o->log_dir) : 0;
	if (n == 0 || strncmp(o->log_path, o->log_dir, n) != 0 || o->log_path[n] != '/')
		return open(o->log_path, flags, 0640);
	int dfd = open(o->log_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	struct open_how how = { .flags = (uint64_t)flags, .mode = 0640,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, dfd, o->log_path + n + 1, &how, sizeof(how));
	int e = errno;
	close(dfd);
	errno = e;
	return fd;
}

static void open_log(const struct opts *o)
{
	int fd = open_log_file(o);
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

/* runc create with the container's stdio: in_r (or /dev/null) as stdin, out_w/err_w (or /dev/null)
 * as stdout/stderr; with a tty runc ignores them and connects to console (a socket path). */
static pid_t spawn_create(const struct opts *o, int in_r, int out_w, int err_w, const char *console)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	if (in_r < 0)
		in_r = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out_w < 0 || err_w < 0)
		out_w = err_w = open("/dev/null", O_WRONLY | O_CLOEXEC);
	/* dup2 clears O_CLOEXEC on 0-2 only: nothing else of ours reaches runc */
	if (in_r < 0 || out_w < 0 || err_w < 0 || dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		_exit(127);
	close(SYNC_FD);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (console)
		execl(o->runtime, o->runtime, "--root", o->root, "--log", o->runtime_log, "--log-format", "json",
		      "create", "--bundle", o->bundle, "--pid-file", o->pid_file, "--console-socket", console, o->id,
		      (char *)NULL);
	else
		execl(o->runtime, o->runtime, "--root", o->root, "--log", o->runtime_log, "--log-format", "json",
		      "create", "--bundle", o->bundle, "--pid-file", o->pid_file, o->id, (char *)NULL);
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

static int parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "0") && strcmp(v, "1"))
		return -1;
	*out = v[0] == '1';
	return 0;
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
		else if (!strcmp(k, "--log-dir")) o->log_dir = v;
		else if (!strcmp(k, "--exit-file")) o->exit_file = v;
		else if (!strcmp(k, "--pid-file")) o->pid_file = v;
		else if (!strcmp(k, "--runtime-log")) o->runtime_log = v;
		else if (!strcmp(k, "--tty")) { if (parse_bool(v, &o->tty) < 0) return -1; }
		else if (!strcmp(k, "--stdin")) { if (parse_bool(v, &o->stdin) < 0) return -1; }
		else if (!strcmp(k, "--stdin-once")) { if (parse_bool(v, &o->stdin_once) < 0) return -1; }
		else return -1;
	}
	if (argc % 2 != 1 || !o->id || !o->runtime || !o->root || !o->bundle || !o->log_path || !o->exit_file ||
	    !o->pid_file || !o->runtime_log)
		return -1;
	return 0;
}

/* Serve the container until it exits: log its output, reopen the log on SIGUSR1, serve attach
 * clients. */
static int serve(const struct opts *o, pid_t ctr, struct stream *streams, int sfd)
{
	int status = -1;
	bool exited = false;
	int open_streams = (streams[0].fd >= 0) + (streams[1].fd >= 0);
	while (open_streams > 0 || !exited) {
		struct pollfd pfd[3 + ATTACH_MAX_POLLFDS] = { { .fd = sfd, .events = POLLIN } };
		for (int i = 0; i < 2; i++)
			pfd[1 + i] = (struct pollfd){ .fd = streams[i].fd, .events = POLLIN };
		size_t na = attach_srv ? attach_poll_fill(attach_srv, pfd + 3, ATTACH_MAX_POLLFDS) : 0;
		/* Once the container is gone, other processes of a shared pid namespace may still
		 * hold the pipes: drain for a bounded time only. */
		bool pending = streams[0].len || streams[1].len;
		int timeout = exited ? 200 : pending ? PARTIAL_FLUSH_MS : -1;
		int r = poll(pfd, 3 + na, timeout);
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
		if (r < 0)
			continue;
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
		if (na)
			attach_poll_handle(attach_srv, pfd + 3, na);
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


/* The socket runc create connects to with the pty master. Bound in the bundle directory through
 * /proc/<pid>/fd/<dirfd>, a path short enough for sun_path that runc can also resolve. */
static int console_listen(int dirfd, char *path, size_t len)
{
	snprintf(path, len, "/proc/%d/fd/%d/%s", (int)getpid(), dirfd, CONSOLE_SOCKET);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	if (unlinkat(dirfd, CONSOLE_SOCKET, 0) < 0 && errno != ENOENT)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	mode_t old = umask(0177); /* 0600: runc runs as root */
	int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (r < 0 || listen(fd, 1) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void fail_create(const struct opts *o)
{
	char msg[1024];
	runtime_error(o, msg, sizeof(msg));
	sync_msg("ERR %s\n", msg);
	_exit(1);
}

/* The container's stdio as the monitor holds it after runc create. */
struct ctr_io {
	int out_r, err_r; /* log streams: pipe read ends, or the pty master as out_r */
	int in_w;         /* stdin: pipe write end or a dup of the pty master; -1 none */
	int pty;          /* a dup of the pty master for resizes; -1 without tty */
};

/* runc create; on success io is filled. Reports ERR and exits on failure. */
static void create_container(const struct opts *o, int dirfd, struct ctr_io *io)
{
	*io = (struct ctr_io){ .out_r = -1, .err_r = -1, .in_w = -1, .pty = -1 };
	int out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, in_p[2] = { -1, -1 };
	int console = -1;
	char console_path[128];
	if (o->tty) {
		console = console_listen(dirfd, console_path, sizeof(console_path));
		if (console < 0) {
			sync_msg("ERR console socket: %s\n", strerror(errno));
			_exit(1);
		}
	} else if (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0 ||
		   (o->stdin && pipe2(in_p, O_CLOEXEC) < 0)) {
		sync_msg("ERR monitor setup: %s\n", strerror(errno));
		_exit(1);
	}
	pid_t create = spawn_create(o, in_p[0], out_p[1], err_p[1], o->tty ? console_path : NULL);
	int fds[] = { in_p[0], out_p[1], err_p[1] };
	for (size_t i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	int st;
	if (create < 0 || waitpid(create, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_create(o);
	if (o->tty) {
		int master = vgpu_console_recv(console, CONSOLE_WAIT_MS);
		close(console);
		unlinkat(dirfd, CONSOLE_SOCKET, 0);
		if (master < 0) {
			sync_msg("ERR runc create sent no console to %s\n", console_path);
			_exit(1);
		}
		io->out_r = master;
		io->pty = fcntl(master, F_DUPFD_CLOEXEC, 0);
		io->in_w = o->stdin ? fcntl(master, F_DUPFD_CLOEXEC, 0) : -1;
		if (io->pty < 0 || (o->stdin && io->in_w < 0)) {
			sync_msg("ERR dup pty: %s\n", strerror(errno));
			_exit(1);
		}
	} else {
		io->out_r = out_p[0];
		io->err_r = err_p[0];
		io->in_w = in_p[1];
	}
}

/* Detach: the daemon reaps this first process at once; the monitor lives on in its own session,
 * re-parented away from the daemon, as the subreaper of the container. Returns a signalfd for
 * SIGCHLD and SIGUSR1 (-1 on failure). */
static int detach(void)
{
	pid_t pid = fork();
	if (pid < 0) {
		sync_msg("ERR fork monitor: %s\n", strerror(errno));
		_exit(1);
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
	return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	if (parse_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: vgpu-monitor --id ID --runtime PATH --root DIR --bundle DIR --log FILE "
				"--exit-file FILE --pid-file FILE --runtime-log FILE [--tty 0|1] [--stdin 0|1] "
				"[--stdin-once 0|1] (sync pipe on fd 3)\n");
		return 2;
	}
	int sfd = detach();
	int dirfd = open(o.bundle, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0 || dirfd < 0) {
		sync_msg("ERR monitor setup: %s\n", strerror(errno));
		_exit(1);
	}
	open_log(&o);
	if (log_fd < 0) {
		sync_msg("ERR open log %s: %s\n", o.log_path, strerror(errno));
		_exit(1);
	}
	struct ctr_io io;
	create_container(&o, dirfd, &io);
	pid_t ctr = read_pid_file(o.pid_file);
	if (ctr <= 0) {
		sync_msg("ERR runc create wrote no pid to %s\n", o.pid_file);
		_exit(1);
	}
	/* Attach is served from before the daemon hears OK: an Attach right after StartContainer
	 * finds the socket. */
	struct attach_config acfg = { .tty = o.tty, .stdin_once = o.stdin_once, .ctr_stdin = io.in_w, .pty = io.pty };
	int r = attach_open(dirfd, &acfg, &attach_srv);
	if (r < 0) {
		kill(ctr, SIGKILL);
		sync_msg("ERR attach socket in %s: %s\n", o.bundle, strerror(-r));
		_exit(1);
	}
	sync_msg("OK %d %d\n", (int)ctr, (int)getpid());
	close(SYNC_FD);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	static struct stream streams[2];
	streams[0] = (struct stream){ .name = "stdout", .index = 0, .fd = io.out_r };
	streams[1] = (struct stream){ .name = "stderr", .index = 1, .fd = io.err_r };
	for (int i = 0; i < 2; i++)
		if (streams[i].fd >= 0)
			fcntl(streams[i].fd, F_SETFL, O_NONBLOCK);
	int status = serve(&o, ctr, streams, sfd);
	attach_close(attach_srv, ATTACH_FLUSH_MS);
	attach_srv = NULL;
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
