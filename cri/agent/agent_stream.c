/* Interactive streams in the guest: a child of the agent per Exec/Attach/port-forward session,
 * serving its own vchan (see agent_stream.h). */
#include "agent_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

#include "agent_shepherd.h"

#define STREAM_RING 65536
#define CONNECT_WAIT_MS 30000   /* the daemon connects right after STREAM_OPENED */
#define OPEN_SYNC_MS 10000
#define EXIT_GRACE_MS 2000      /* output still open after the process exited (its children) */
#define STDIN_BUF_MAX (64u << 10)
#define TAIL_LINE_MAX (64u << 10)
#define PIDFILE_WAIT_MS 2000
#define PF_CONNECT_MS 3000      /* a loopback connect answers at once unless the backlog is full */

#define fail(msg, code, ...) agent_fail(msg, AGENT_CTR_MSG_MAX, code, __VA_ARGS__)

/* One session, in the stream child. */
struct stream {
	const struct agent_ctr_env *env;
	const struct agent_stream_req *req;
	struct libxenvchan *ch;
	unsigned int seq;
	/* exec */
	pid_t runc_pid;
	char pidfile[600];
	int master;                 /* tty: the pty master (exec: also out_fd[0]; attach: the container's,
				       for resizes, output comes from the log); -1 without a tty */
	int in_fd;                  /* the process's stdin (pipe, pty master or the container's FIFO) */
	int out_fd[2];              /* stdout, stderr read ends (-1 when not wanted or at EOF) */
	bool exited;
	int exit_code;
	double exit_at;
	/* attach */
	char dir[512];
	int log_fd;
	char *line;                 /* a log record not complete yet */
	size_t line_len;
	bool stdin_once;
	/* port-forward: in_fd and out_fd[0] are two descriptors of the connection to the port */
	int pf_error;               /* errno of a failed read or write on it: the session ends */
	const char *pf_step;
	/* all */
	uint8_t rx[AGENT_HDR_SIZE + AGENT_STREAM_MAX_DATA];
	size_t rx_len;
	struct agent_buf stdin_buf;
	bool stdin_close;           /* STDIN_CLOSE seen: close in_fd once stdin_buf is written */
	double last_rx, last_tx;
};

/* ---- frames ---- */

/* Send one frame if the ring has room for all of it now (the vchan is non-blocking); -EAGAIN
 * otherwise, -EPIPE when the daemon is gone. */
static int try_send(struct stream *s, uint16_t type, const void *data, size_t len)
{
	struct agent_hdr hdr = { .type = type, .len = (uint32_t)len };
	uint8_t raw[AGENT_HDR_SIZE];

	if (!libxenvchan_is_open(s->ch))
		return -EPIPE;
	if (libxenvchan_buffer_space(s->ch) < (int)(AGENT_HDR_SIZE + len))
		return -EAGAIN;
	agent_hdr_encode(raw, &hdr);
	if (libxenvchan_write(s->ch, (const char *)raw, sizeof(raw)) != (int)sizeof(raw) ||
	    (len && libxenvchan_write(s->ch, data, len) != (int)len))
		return -EPIPE;
	s->last_tx = agent_ctr_mono_s();
	return 0;
}

/* The same, waiting (up to 5 s) for room: EXIT must get through. */
static int send_wait(struct stream *s, uint16_t type, const void *data, size_t len)
{
	double deadline = agent_ctr_mono_s() + 5;
	struct pollfd p = { .fd = libxenvchan_fd_for_select(s->ch), .events = POLLIN };

	for (;;) {
		int rc = try_send(s, type, data, len);
		if (rc != -EAGAIN || agent_ctr_mono_s() > deadline)
			return rc;
		if (poll(&p, 1, 100) > 0)
			libxenvchan_wait(s->ch);
	}
}

static bool is_pf(const struct stream *s)
{
	return s->req->type == AGENT_MSG_POD_PORTFWD_STREAM;
}

/* ---- the process ---- */

static pid_t exec_target(struct stream *s)
{
	char text[32] = "";

	for (int i = 0; i < PIDFILE_WAIT_MS / 20; i++) {
		int fd = open(s->pidfile, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, text, sizeof(text) - 1);
			close(fd);
			if (n > 0) {
				text[n] = '\0';
				pid_t pid = (pid_t)atoi(text);
				if (pid > 1)
					return pid;
			}
		}
		siginfo_t si = { 0 };
		if (s->exited || waitid(P_PID, (id_t)s->runc_pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != 0)
			return -1; /* runc is gone: nothing of ours to kill */
		usleep(20 * 1000);
	}
	return -1;
}

/* Kill the exec'd process (runc cannot forward SIGKILL), then runc; reap runc. */
static void kill_exec(struct stream *s)
{
	if (s->runc_pid <= 0)
		return;
	if (!s->exited) {
		pid_t target = exec_target(s);
		if (target > 1)
			kill(target, SIGKILL);
		kill(s->runc_pid, SIGKILL);
		while (waitpid(s->runc_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	unlink(s->pidfile);
}

static int open_pty(int *master, int *slave)
{
	char name[64];
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (m < 0)
		return -errno;
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0) {
		int e = -errno;
		close(m);
		return e;
	}
	int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sl < 0) {
		int e = -errno;
		close(m);
		return e;
	}
	/* raw from the start: runc does the same once it runs, but what the client typed before
	 * would be echoed by this pty as well as by the container's */
	struct termios t;
	if (tcgetattr(sl, &t) == 0) {
		cfmakeraw(&t);
		(void)tcsetattr(sl, TCSANOW, &t);
	}
	*master = m;
	*slave = sl;
	return 0;
}

/* child[0..2]: the process's stdio; ours go into s. */
static int make_stdio(struct stream *s, int child[3])
{
	uint32_t f = s->req->flags;
	int p[2];

	if (f & AGENT_STREAM_TTY) {
		int rc = open_pty(&s->master, &child[0]);
		if (rc < 0)
			return rc;
		child[1] = child[2] = child[0];
		s->out_fd[0] = s->master;
		s->in_fd = (f & AGENT_STREAM_STDIN) ? s->master : -1;
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		static const uint32_t bits[3] = { AGENT_STREAM_STDIN, AGENT_STREAM_STDOUT, AGENT_STREAM_STDERR };
		if (!(f & bits[i])) {
			child[i] = open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
			if (child[i] < 0)
				return -errno;
			continue;
		}
		if (pipe2(p, O_CLOEXEC) < 0)
			return -errno;
		child[i] = i == 0 ? p[0] : p[1];
		if (i == 0)
			s->in_fd = p[1];
		else
			s->out_fd[i - 1] = p[0];
	}
	return 0;
}

static int start_exec(struct stream *s)
{
	int child[3] = { -1, -1, -1 };
	size_t argc = 0;

	while (s->req->argv[argc])
		argc++;
	snprintf(s->pidfile, sizeof(s->pidfile), "%s/.stream-%u.pid", s->env->root, s->seq);
	char **argv = calloc(argc + 10, sizeof(*argv));
	int rc = argv ? make_stdio(s, child) : -ENOMEM;
	if (rc == 0) {
		size_t n = 0;
		argv[n++] = (char *)s->env->runc;
		argv[n++] = "--root";
		argv[n++] = (char *)s->env->runc_root;
		argv[n++] = "exec";
		argv[n++] = "--pid-file";
		argv[n++] = s->pidfile;
		if (s->req->flags & AGENT_STREAM_TTY)
			argv[n++] = "--tty";
		argv[n++] = s->req->id;
		memcpy(argv + n, s->req->argv, argc * sizeof(*argv));
		s->runc_pid = fork();
		if (s->runc_pid == 0) {
			dup2(child[0], 0);
			dup2(child[1], 1);
			dup2(child[2], 2);
			execv(argv[0], argv);
			dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
			_exit(127);
		}
		if (s->runc_pid < 0)
			rc = -errno;
	}
	free(argv);
	int ours[3] = { s->in_fd, s->out_fd[0], s->out_fd[1] };
	for (int i = 0; i < 3; i++)
		if (ours[i] >= 0)
			fcntl(ours[i], F_SETFL, fcntl(ours[i], F_GETFL) | O_NONBLOCK);
	for (int i = 0; i < 3; i++) /* ours closed: EOF (or EIO on the master) once the process is gone */
		if (child[i] >= 0 && (i == 0 || child[i] != child[0]))
			close(child[i]);
	return rc;
}

static void reap_exec(struct stream *s)
{
	int status;

	if (s->exited || s->runc_pid <= 0 || waitpid(s->runc_pid, &status, WNOHANG) != s->runc_pid)
		return;
	s->exited = true;
	s->exit_at = agent_ctr_mono_s();
	/* runc exec reports the process's status as its own (128+N for signal N) */
	s->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- attach: the container's log records from their current end, and its stdin FIFO ---- */

static int start_attach(struct stream *s)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/log", s->dir);
	s->log_fd = open(path, O_RDONLY | O_CLOEXEC | O_CREAT, 0600);
	if (s->log_fd < 0 || lseek(s->log_fd, 0, SEEK_END) < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/stdin-closed", s->dir);
	bool take_stdin = (s->req->flags & AGENT_STREAM_STDIN) && !(s->stdin_once && access(path, F_OK) == 0);
	if (s->req->flags & AGENT_STREAM_TTY) { /* the container's terminal (agent_stream.h) */
		s->master = agent_tty_connect(s->dir);
		if (s->master < 0)
			return s->master;
		if (take_stdin && (s->in_fd = fcntl(s->master, F_DUPFD_CLOEXEC, 0)) < 0)
			return -errno;
	} else if (take_stdin) {
		/* (after stdin_once closed it, a later attach's stdin is discarded, as on runc pods) */
		snprintf(path, sizeof(path), "%s/stdin", s->dir);
		/* the container holds the reading end: without a reader it has exited (ENXIO) */
		s->in_fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (s->in_fd < 0)
			return -errno;
	}
	s->line = malloc(TAIL_LINE_MAX);
	return s->line ? 0 : -ENOMEM;
}

/* "TIMESTAMP STREAM P|F CONTENT": the content to the daemon (F adds the newline back). */
static int forward_record(struct stream *s, const char *rec, size_t len)
{
	const char *sp1 = memchr(rec, ' ', len);
	if (!sp1)
		return 0;
	const char *stream = sp1 + 1;
	size_t left = len - (size_t)(stream - rec);
	if (left < 9 || (stream[7] != 'F' && stream[7] != 'P') || stream[8] != ' ')
		return 0;
	bool err = memcmp(stream, "stderr ", 7) == 0;
	if (!err && memcmp(stream, "stdout ", 7) != 0)
		return 0;
	if (!(s->req->flags & (err ? AGENT_STREAM_STDERR : AGENT_STREAM_STDOUT)))
		return 0;
	uint16_t type = err ? AGENT_MSG_STREAM_STDERR : AGENT_MSG_STREAM_STDOUT;
	const char *content = stream + 9;
	size_t n = left - 9;
	for (size_t off = 0; off < n; off += AGENT_STREAM_MAX_DATA) {
		size_t k = n - off < AGENT_STREAM_MAX_DATA ? n - off : AGENT_STREAM_MAX_DATA;
		int rc = send_wait(s, type, content + off, k);
		if (rc < 0)
			return rc;
	}
	return stream[7] == 'F' ? send_wait(s, type, "\n", 1) : 0;
}

/* New records of the log (partial lines wait for their end); -EPIPE when the daemon is gone. */
static int tail_log(struct stream *s, bool *at_end)
{
	char buf[8192];
	ssize_t n = read(s->log_fd, buf, sizeof(buf));

	*at_end = n <= 0;
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (s->line_len < TAIL_LINE_MAX)
				s->line[s->line_len++] = buf[i];
			continue;
		}
		int rc = forward_record(s, s->line, s->line_len);
		s->line_len = 0;
		if (rc == -EPIPE)
			return rc;
	}
	return 0;
}

static bool container_exited(struct stream *s)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/exit", s->dir);
	return access(path, F_OK) == 0;
}

/* Attach ends (stdin EOF or detach): with stdin_once the container's stdin closes for good. */
static void attach_stdin_done(struct stream *s)
{
	char path[600];

	if (s->in_fd >= 0) {
		close(s->in_fd);
		s->in_fd = -1;
		if (s->stdin_once) {
			snprintf(path, sizeof(path), "%s/stdin-closed", s->dir);
			int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd >= 0)
				close(fd);
		}
	}
}

/* ---- the pump ---- */

static void close_stdin(struct stream *s)
{
	if (s->req->type == AGENT_MSG_CTR_ATTACH_STREAM) {
		attach_stdin_done(s);
	} else if (s->in_fd >= 0) {
		if (is_pf(s)) /* the port sees EOF; its answer still comes on out_fd[0] */
			(void)shutdown(s->in_fd, SHUT_WR);
		if (s->in_fd != s->master) /* a tty's stdin is the master: nothing to close */
			close(s->in_fd);
		s->in_fd = -1;
	}
}

static void pf_failed(struct stream *s, const char *step, int e)
{
	if (is_pf(s) && !s->pf_error) {
		s->pf_error = e > 0 && e < 256 ? e : EIO;
		s->pf_step = step;
	}
}

/* One frame from the daemon; -EPROTO ends the stream, 1: the daemon asked to kill. */
static int handle_frame(struct stream *s, const struct agent_hdr *hdr, const uint8_t *payload)
{
	uint32_t w, h;

	switch (hdr->type) {
	case AGENT_MSG_STREAM_STDIN:
		if (s->in_fd >= 0 && !s->stdin_close && agent_put_bytes(&s->stdin_buf, payload, hdr->len) < 0)
			return -ENOMEM;
		return 0;
	case AGENT_MSG_STREAM_STDIN_CLOSE:
		s->stdin_close = true;
		return 0;
	case AGENT_MSG_STREAM_RESIZE:
		if (agent_stream_resize_decode(payload, hdr->len, &w, &h) < 0)
			return -EPROTO;
		if (s->master >= 0) {
			struct winsize ws = { .ws_row = (unsigned short)h, .ws_col = (unsigned short)w };
			/* runc copies our pty's size to the container's on SIGWINCH (ours is not its
			 * controlling terminal, so the kernel does not send it) */
			if (ioctl(s->master, TIOCSWINSZ, &ws) == 0 && s->runc_pid > 0 && !s->exited)
				kill(s->runc_pid, SIGWINCH);
		}
		return 0;
	case AGENT_MSG_STREAM_KILL:
		return 1;
	default: /* KEEPALIVE */
		return 0;
	}
}

/* Read what the daemon sent (whole frames, one at a time into s->rx). */
static int pump_in(struct stream *s)
{
	for (;;) {
		if (s->stdin_buf.len >= STDIN_BUF_MAX)
			return 0; /* backpressure: the process is not reading */
		size_t need = AGENT_HDR_SIZE;
		struct agent_hdr hdr;
		if (s->rx_len >= AGENT_HDR_SIZE) {
			if (agent_hdr_decode(s->rx, &hdr) < 0 || agent_stream_frame_check(&hdr, 0) < 0)
				return -EPROTO;
			need += hdr.len;
		}
		if (s->rx_len < need) {
			int n = libxenvchan_read(s->ch, (char *)s->rx + s->rx_len, need - s->rx_len);
			if (n < 0)
				return -EPIPE;
			if (n == 0)
				return 0;
			s->rx_len += (size_t)n;
			s->last_rx = agent_ctr_mono_s();
			continue;
		}
		s->rx_len = 0;
		int rc = handle_frame(s, &hdr, s->rx + AGENT_HDR_SIZE);
		if (rc != 0)
			return rc;
	}
}

/* The process's output into frames while the ring has room. */
static int pump_out(struct stream *s, int i, struct pollfd *p)
{
	char buf[AGENT_STREAM_MAX_DATA];
	int space = libxenvchan_buffer_space(s->ch) - (int)AGENT_HDR_SIZE;

	if (s->out_fd[i] < 0 || !(p->revents & (POLLIN | POLLHUP | POLLERR)) || space <= 0)
		return 0;
	ssize_t n = read(s->out_fd[i], buf, (size_t)space < sizeof(buf) ? (size_t)space : sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) { /* EOF, or EIO: a pty whose slave is closed everywhere */
		if (n < 0)
			pf_failed(s, "read from", errno);
		if (s->out_fd[i] == s->in_fd)
			s->in_fd = -1;
		if (s->out_fd[i] == s->master)
			s->master = -1;
		close(s->out_fd[i]);
		s->out_fd[i] = -1;
		/* port-forward: the port half-closed; the daemon half-closes the client's side */
		return is_pf(s) && n == 0 ? send_wait(s, AGENT_MSG_STREAM_STDOUT_CLOSE, NULL, 0) : 0;
	}
	return try_send(s, i == 0 ? AGENT_MSG_STREAM_STDOUT : AGENT_MSG_STREAM_STDERR, buf, (size_t)n);
}

static void pump_stdin(struct stream *s)
{
	while (s->stdin_buf.len && s->in_fd >= 0) {
		ssize_t n = write(s->in_fd, s->stdin_buf.data, s->stdin_buf.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the process closed its stdin */
			if (n < 0)
				pf_failed(s, "write to", errno);
			s->stdin_buf.len = 0;
			close_stdin(s);
			break;
		}
		memmove(s->stdin_buf.data, s->stdin_buf.data + n, s->stdin_buf.len - (size_t)n);
		s->stdin_buf.len -= (size_t)n;
	}
	if (s->in_fd < 0)
		s->stdin_buf.len = 0;
	if (s->stdin_close && s->stdin_buf.len == 0 && s->in_fd >= 0)
		close_stdin(s);
}

/* Has the session ended? Sets *code for a natural end (EXIT to send). */
static bool finished(struct stream *s, int *code)
{
	if (s->req->type == AGENT_MSG_CTR_ATTACH_STREAM) {
		*code = 0;
		return false; /* decided in the loop, after the log is read to its end */
	}
	if (is_pf(s)) { /* both directions ended, or the connection failed */
		*code = s->pf_error;
		return s->pf_error || (s->out_fd[0] < 0 && s->in_fd < 0 && s->stdin_buf.len == 0);
	}
	reap_exec(s);
	*code = s->exit_code;
	bool outputs_open = s->out_fd[0] >= 0 || s->out_fd[1] >= 0;
	return s->exited && (!outputs_open || agent_ctr_mono_s() - s->exit_at > EXIT_GRACE_MS / 1000.0);
}

/* Until the process exits (EXIT sent: 0), the daemon goes away or asks to kill (1), or breaks
 * the protocol (-EPROTO). */
static int pump(struct stream *s)
{
	s->last_rx = s->last_tx = agent_ctr_mono_s();
	for (;;) {
		struct pollfd p[4] = {
			{ .fd = libxenvchan_fd_for_select(s->ch), .events = POLLIN },
			{ .fd = s->out_fd[0], .events = POLLIN },
			{ .fd = s->out_fd[1], .events = POLLIN },
			/* (exec with a tty: stdin is the master, polled for output already) */
			{ .fd = s->stdin_buf.len && s->in_fd != s->out_fd[0] ? s->in_fd : -1, .events = POLLOUT },
		};
		int n = poll(p, 4, 100);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0 && p[0].revents)
			libxenvchan_wait(s->ch);
		int rc = pump_in(s);
		if (rc != 0)
			return rc < 0 && rc != -EPROTO ? 1 : rc;
		pump_stdin(s);
		for (int i = 0; i < 2; i++)
			if (n > 0 && (rc = pump_out(s, i, &p[1 + i])) == -EPIPE)
				return 1;
		if (s->req->type == AGENT_MSG_CTR_ATTACH_STREAM) {
			bool was_exited = container_exited(s), at_end = false; /* exit file first: it follows the last record */
			if (tail_log(s, &at_end) == -EPIPE)
				return 1;
			if (was_exited && at_end)
				return send_wait(s, AGENT_MSG_STREAM_EXIT, (uint8_t[4]){ 0 }, 4) < 0;
		}
		int code;
		if (finished(s, &code)) {
			uint8_t raw[4];
			if (is_pf(s) && code) {
				char text[160];
				int len = snprintf(text, sizeof(text), "%s 127.0.0.1:%u: %s", s->pf_step, s->req->port,
						   strerror(code));
				(void)send_wait(s, AGENT_MSG_STREAM_STDERR, text, (size_t)len);
			}
			agent_stream_exit_encode(raw, code);
			return send_wait(s, AGENT_MSG_STREAM_EXIT, raw, sizeof(raw)) < 0;
		}
		double t = agent_ctr_mono_s();
		if (!libxenvchan_is_open(s->ch) || t - s->last_rx > AGENT_STREAM_SILENCE_MS / 1000.0)
			return 1;
		if (t - s->last_tx > AGENT_STREAM_KEEPALIVE_MS / 1000.0 &&
		    try_send(s, AGENT_MSG_STREAM_KEEPALIVE, NULL, 0) == -EPIPE)
			return 1;
	}
}

/* ---- the stream child ---- */

static bool wait_for_daemon(struct libxenvchan *ch)
{
	struct pollfd p = { .fd = libxenvchan_fd_for_select(ch), .events = POLLIN };
	double deadline = agent_ctr_mono_s() + CONNECT_WAIT_MS / 1000.0;

	while (libxenvchan_is_open(ch) == 2) {
		if (agent_ctr_mono_s() > deadline)
			return false;
		if (poll(&p, 1, 200) > 0)
			libxenvchan_wait(ch);
	}
	return libxenvchan_is_open(ch) == 1;
}

/* Runs in the child: offer the vchan, report on sync_fd, serve the session; never returns. */
static void stream_child(struct stream *s, const char *path, int sync_fd)
{
	signal(SIGPIPE, SIG_IGN);
	s->ch = libxenvchan_server_init(NULL, 0, path, STREAM_RING, STREAM_RING);
	if (!s->ch) {
		dprintf(sync_fd, "ERR vchan server at %s: %s", path, strerror(errno));
		_exit(1);
	}
	s->ch->blocking = 0;
	if (write(sync_fd, "OK", 2) != 2)
		_exit(1);
	close(sync_fd);
	int rc = 1;
	if (wait_for_daemon(s->ch)) {
		int started = is_pf(s) ? 0 /* connected already */
			      : s->req->type == AGENT_MSG_CTR_EXEC_STREAM ? start_exec(s) : start_attach(s);
		if (started < 0) {
			char text[256];
			int n = snprintf(text, sizeof(text), "vgpu-agent: cannot start the %s: %s\n",
					 s->req->type == AGENT_MSG_CTR_EXEC_STREAM ? "exec" : "attach", strerror(-started));
			(void)send_wait(s, AGENT_MSG_STREAM_STDERR, text, (size_t)n);
			uint8_t raw[4];
			agent_stream_exit_encode(raw, 126);
			(void)send_wait(s, AGENT_MSG_STREAM_EXIT, raw, sizeof(raw));
		} else {
			rc = pump(s);
		}
	}
	if (rc != 0) /* killed, gone, silent or garbage: the process must not outlive the session */
		kill_exec(s);
	else
		unlink(s->pidfile);
	if (s->req->type == AGENT_MSG_CTR_ATTACH_STREAM)
		attach_stdin_done(s);
	libxenvchan_close(s->ch);
	_exit(0);
}

static int check_container(const struct agent_ctr_env *env, const struct agent_stream_req *req, char *dir,
			   size_t dir_len, bool *stdin_once, char *msg)
{
	struct agent_ctr_state st;
	char path[600];
	int rc = agent_ctr_status(env, req->id, &st, msg);

	if (rc < 0)
		return rc;
	if (st.state != AGENT_CTR_RUNNING)
		return fail(msg, -EBUSY, "container %s is not running", req->id);
	snprintf(dir, dir_len, "%s/%s", env->root, req->id);
	snprintf(path, sizeof(path), "%s/stdin-once", dir);
	*stdin_once = access(path, F_OK) == 0;
	if (req->type != AGENT_MSG_CTR_ATTACH_STREAM)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, AGENT_TTY_FILE);
	bool tty = access(path, F_OK) == 0;
	if (tty != ((req->flags & AGENT_STREAM_TTY) != 0))
		return fail(msg, -EINVAL, "container %s was created with tty=%s", req->id, tty ? "true" : "false");
	snprintf(path, sizeof(path), "%s/%s", dir, tty ? AGENT_TTY_STDIN_FILE : "stdin");
	if ((req->flags & AGENT_STREAM_STDIN) && access(path, F_OK) < 0)
		return fail(msg, -EINVAL, "container %s was created without stdin", req->id);
	return 0;
}

/* Port-forward: connect to 127.0.0.1:port here, in the guest's network namespace (the pod's: the
 * containers' specs join it), before answering, so that a refused connection is the request's
 * error. fd_out gets the connection twice (stdin and stdout of the session: each end closes
 * its own descriptor). */
static int pf_connect(uint32_t port, int fd_out[2], char *msg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail(msg, -errno, "socket: %s", strerror(errno));
	int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int e = 0;
		socklen_t elen = sizeof(e);
		rc = poll(&p, 1, PF_CONNECT_MS);
		if (rc == 0)
			errno = ETIMEDOUT;
		else if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e)
			errno = e;
		rc = rc > 0 && e == 0 ? 0 : -1;
	}
	if (rc == 0 && (fd_out[1] = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		rc = -1;
	if (rc < 0) {
		int e = errno;
		close(fd);
		return fail(msg, -e, "connect to 127.0.0.1:%u in the pod: %s", port, strerror(e));
	}
	fd_out[0] = fd;
	return 0;
}

int agent_stream_open(const struct agent_ctr_env *env, const struct agent_stream_req *req,
		      char path[AGENT_STREAM_PATH_MAX], char *msg)
{
	static unsigned int seq;
	struct stream s = { .env = env, .req = req, .master = -1, .in_fd = -1, .out_fd = { -1, -1 }, .log_fd = -1 };
	char buf[AGENT_CTR_MSG_MAX], what[64 + AGENT_MAX_ID_LEN];
	int sync[2], conn[2] = { -1, -1 };
	size_t len = 0;

	int rc = is_pf(&s) ? pf_connect(req->port, conn, msg)
			   : check_container(env, req, s.dir, sizeof(s.dir), &s.stdin_once, msg);
	if (rc < 0)
		return rc;
	if (is_pf(&s))
		snprintf(what, sizeof(what), "port-forward to port %u", req->port);
	else
		snprintf(what, sizeof(what), "stream for container %s", req->id);
	s.in_fd = conn[0];
	s.out_fd[0] = conn[1];
	s.seq = ++seq;
	snprintf(path, AGENT_STREAM_PATH_MAX, "%s%u", AGENT_STREAM_PATH_PREFIX, s.seq);
	pid_t pid = -1;
	if (pipe2(sync, O_CLOEXEC) < 0) {
		rc = fail(msg, -errno, "pipe: %s", strerror(errno));
	} else if ((pid = fork()) == 0) {
		close(sync[0]);
		stream_child(&s, path, sync[1]);
	} else {
		close(sync[1]);
		if (pid < 0) {
			rc = fail(msg, -errno, "fork: %s", strerror(errno));
			close(sync[0]);
		}
	}
	for (int i = 0; i < 2; i++) /* the child has the connection now */
		if (conn[i] >= 0)
			close(conn[i]);
	if (rc < 0)
		return rc;
	len = agent_ctr_read_for(sync[0], buf, sizeof(buf), OPEN_SYNC_MS);
	close(sync[0]);
	if (strcmp(buf, "OK") == 0)
		return 0; /* the agent's main loop reaps the child when it ends */
	kill(pid, SIGKILL);
	return fail(msg, -EIO, "%s: %s", what, len ? (strncmp(buf, "ERR ", 4) == 0 ? buf + 4 : buf) : "no vchan offered in time");
}
