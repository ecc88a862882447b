/* The shepherd of a container in the guest (see agent_shepherd.h): the agent's child that runs
 * `runc create`, turns the container's stdout/stderr (or its terminal's output) into CRI log
 * records, reaps the container and writes its exit file. Split from agent_ctr.c, which forks it at
 * CTR_CREATE. */
#include "agent_shepherd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_log.h"
#include "../monitor/attach_proto.h"
#include "agent_stream.h"

#define IDLE_FLUSH_MS 100       /* a partial line becomes a P record after this long */
#define EXIT_GRACE_MS 2000      /* output still open after the container exited (its children) */
#define CONSOLE_WAIT_MS 2000    /* runc connected before it exited: the master is there at once */
#define CONSOLE_SOCKET "console.sock"

static void write_log(int log_fd, struct agent_buf *b)
{
	if (b->len && write(log_fd, b->data, b->len) < 0) {
		/* a full tmpfs: the records are lost, the container goes on */
	}
	b->len = 0;
}

static int exit_code_of(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The shepherd's view of one container. */
struct shepherd {
	const char *dir;
	int sync_fd;                    /* to the agent until runc create is done; then -1 */
	int log_fd;
	int dirfd;                      /* the bundle (O_PATH), for the sockets' short paths */
	bool tty;                       /* process.terminal: the pty master instead of pipes */
	int console;                    /* the console socket's listener until runc create is done */
	/* stdout, stderr pipes (runc's own only, with a tty), the pty master (nonblocking), the
	 * AGENT_TTY_SOCKET listener; fd -1 once at EOF or when not there */
	struct pollfd pfd[4];
	struct agent_log_stream streams[3];  /* the pty's output is the third, as stdout */
	struct agent_buf rec;           /* records not yet written */
	pid_t runc_pid, ctr_pid;
	bool runc_done, ctr_done;
	int ctr_status;
	double exit_seen;
	int stdin_wr;                   /* keeps the stdin FIFO open between attaches (-1: none) */
	bool stdin_once;
	/* children reaped before we knew the container's pid (it died before runc create returned) */
	pid_t early_pid[8];
	int early_status[8];
	size_t n_early;
};

/* Does the bundle's config.json carry marker (an exact annotation text, agent_stream.h)? */
static bool spec_has(const char *dir, const char *marker)
{
	char path[600];
	struct stat st;
	bool found = false;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size <= AGENT_MAX_PAYLOAD) {
		char *text = calloc(1, (size_t)st.st_size + 1);
		if (text && read(fd, text, (size_t)st.st_size) == st.st_size)
			found = strstr(text, marker) != NULL;
		free(text);
	}
	close(fd);
	return found;
}

static void touch_in(const char *dir, const char *name)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* ---- the terminal: runc makes the pty inside the container and sends its master to our
 * console socket (--console-socket, SCM_RIGHTS); attach sessions get a copy of it from
 * AGENT_TTY_SOCKET to write stdin and set the window size ---- */

/* A listening socket <bundle>/name, bound through /proc/self/fd/<dirfd> (the bundle's path may
 * not fit sun_path); *path: the name runc reaches it by. -errno. */
static int listen_in_bundle(struct shepherd *sh, const char *name, char *path, size_t len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	snprintf(a.sun_path, sizeof(a.sun_path), "/proc/self/fd/%d/%s", sh->dirfd, name);
	if (path)
		snprintf(path, len, "/proc/%d/fd/%d/%s", (int)getpid(), sh->dirfd, name);
	if (unlinkat(sh->dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (r < 0 || listen(fd, 8) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* An attach session asks for the master: send it a copy, then hang up. */
static void serve_tty(struct shepherd *sh)
{
	int master = sh->pfd[2].fd;
	int conn = accept4(sh->pfd[3].fd, NULL, NULL, SOCK_CLOEXEC);

	if (conn < 0)
		return;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl = { 0 };
	struct iovec iov = { .iov_base = "T", .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (master >= 0 && sendmsg(conn, &mh, MSG_NOSIGNAL) < 0) {
		/* the session gave up waiting: nothing to do */
	}
	close(conn); /* without the master (the pty is gone): the session sees no descriptor */
}

/* The container exited and the pty gave its last output: no more attaches to the terminal. */
static void tty_gone(struct shepherd *sh)
{
	if (sh->pfd[3].fd >= 0) {
		close(sh->pfd[3].fd);
		sh->pfd[3].fd = -1;
		unlinkat(sh->dirfd, AGENT_TTY_SOCKET, 0);
	}
}

int agent_tty_connect(const char *dir)
{
	int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "/proc/self/fd/%d/%s", dirfd, AGENT_TTY_SOCKET);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r = fd < 0 ? -errno : 0;
	if (r == 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		r = -errno;
	close(dirfd);
	if (r == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char one;
		size_t nfds = 0;
		int master = -1;
		r = poll(&p, 1, CONSOLE_WAIT_MS) <= 0 ? -ETIMEDOUT
		    : (int)vgpu_recv_fds(fd, &one, 1, &master, 1, &nfds);
		if (r >= 0)
			r = nfds == 1 ? master : -EBADMSG;
	}
	if (fd >= 0)
		close(fd);
	return r == -ENOENT || r == -ECONNREFUSED || r == -EBADMSG ? -EPIPE : r;
}

/* A container created with CRI stdin reads a FIFO (<dir>/stdin) that attach sessions write
 * into; we hold a writer so it sees EOF only once stdin_once says so. Returns the reading end
 * for the container (or /dev/null's), -errno. */
static int container_stdin(struct shepherd *sh)
{
	char path[600];

	sh->stdin_wr = -1;
	if (sh->tty) { /* runc gives the container the pty's slave; attach writes to the master */
		touch_in(sh->dir, AGENT_TTY_FILE);
		if (spec_has(sh->dir, AGENT_STDIN_ANNOTATION)) {
			touch_in(sh->dir, AGENT_TTY_STDIN_FILE);
			if (spec_has(sh->dir, AGENT_STDIN_ONCE_ANNOTATION))
				touch_in(sh->dir, "stdin-once");
		}
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (!spec_has(sh->dir, AGENT_STDIN_ANNOTATION))
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/stdin", sh->dir);
	if (mkfifo(path, 0600) < 0 && errno != EEXIST)
		return -errno;
	int rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rd < 0)
		return -errno;
	sh->stdin_wr = open(path, O_WRONLY | O_CLOEXEC);
	if (sh->stdin_wr < 0 || fcntl(rd, F_SETFL, fcntl(rd, F_GETFL) & ~O_NONBLOCK) < 0) {
		int e = -errno;
		close(rd);
		return e;
	}
	sh->stdin_once = spec_has(sh->dir, AGENT_STDIN_ONCE_ANNOTATION);
	if (sh->stdin_once) /* tells attach sessions (agent_stream.c) */
		touch_in(sh->dir, "stdin-once");
	return rd;
}

/* stdin_once: the first attach with stdin has ended it; the container reads EOF once no attach
 * session holds the FIFO any more. */
static void check_stdin_closed(struct shepherd *sh)
{
	char path[600];

	if (sh->stdin_wr < 0 || !sh->stdin_once)
		return;
	snprintf(path, sizeof(path), "%s/stdin-closed", sh->dir);
	if (access(path, F_OK) == 0) {
		close(sh->stdin_wr);
		sh->stdin_wr = -1;
	}
}

/* Fork `runc create` with the container's stdio on our pipes (with a tty: runc's own, and
 * --console-socket; *console gets its listener); -errno. */
static int spawn_runc_create(const struct agent_ctr_env *env, const char *id, struct shepherd *sh, int *console)
{
	char pid_file[600], runc_log[600], console_path[128] = "";
	int po[2], pe[2];
	int in = container_stdin(sh);

	if (in < 0)
		return in;
	*console = -1;
	if (sh->tty && (*console = listen_in_bundle(sh, CONSOLE_SOCKET, console_path, sizeof(console_path))) < 0) {
		close(in);
		return *console;
	}

	snprintf(pid_file, sizeof(pid_file), "%s/pid", sh->dir);
	snprintf(runc_log, sizeof(runc_log), "%s/runc.log", sh->dir);
	if (pipe2(po, O_CLOEXEC) < 0) {
		close(in);
		return -errno;
	}
	if (pipe2(pe, O_CLOEXEC) < 0) {
		int e = -errno;
		close(in);
		close(po[0]);
		close(po[1]);
		return e;
	}
	sh->runc_pid = fork();
	if (sh->runc_pid == 0) {
		dup2(in, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (sh->tty)
			execl(env->runc, env->runc, "--root", env->runc_root, "--log", runc_log, "create", "--no-pivot",
			      "--console-socket", console_path, "--bundle", sh->dir, "--pid-file", pid_file, id, (char *)NULL);
		else
			execl(env->runc, env->runc, "--root", env->runc_root, "--log", runc_log, "create", "--no-pivot",
			      "--bundle", sh->dir, "--pid-file", pid_file, id, (char *)NULL);
		dprintf(2, "exec %s: %s\n", env->runc, strerror(errno));
		_exit(127);
	}
	int e = sh->runc_pid < 0 ? -errno : 0;
	close(in);
	close(po[1]);
	close(pe[1]);
	sh->pfd[0] = (struct pollfd){ .fd = po[0], .events = POLLIN };
	sh->pfd[1] = (struct pollfd){ .fd = pe[0], .events = POLLIN };
	return e;
}

/* With a tty: the master from runc, the attach socket; "ERR <why>" and exit when that fails. */
static void take_console(struct shepherd *sh, int console)
{
	int master = vgpu_console_recv(console, CONSOLE_WAIT_MS);
	int listener = master < 0 ? master : listen_in_bundle(sh, AGENT_TTY_SOCKET, NULL, 0);

	close(console);
	unlinkat(sh->dirfd, CONSOLE_SOCKET, 0);
	if (master < 0 || listener < 0) {
		dprintf(sh->sync_fd, "ERR runc create: %s: %s", master < 0 ? "no pty master on the console socket"
			: "attach socket", strerror(-(master < 0 ? master : listener)));
		_exit(1);
	}
	/* nonblocking: the shepherd and attach sessions share it (O_NONBLOCK is the open file's) */
	if (fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK) < 0) {
		dprintf(sh->sync_fd, "ERR pty master: %s", strerror(errno));
		_exit(1);
	}
	sh->pfd[2] = (struct pollfd){ .fd = master, .events = POLLIN };
	sh->pfd[3] = (struct pollfd){ .fd = listener, .events = POLLIN };
}

/* runc create finished with status: tell the agent "OK <pid>" or "ERR <why>" (and exit). */
static void runc_create_done(struct shepherd *sh, int status)
{
	char pid_file[600], text[64] = "";

	sh->runc_done = true;
	snprintf(pid_file, sizeof(pid_file), "%s/pid", sh->dir);
	if (exit_code_of(status) != 0 || agent_ctr_read_small(pid_file, text, sizeof(text)) < 0 || (sh->ctr_pid = atoi(text)) <= 0) {
		/* runc's own log says why (its stderr went into the container's log) */
		char path[600], log[4096] = "";
		snprintf(path, sizeof(path), "%s/runc.log", sh->dir);
		(void)agent_ctr_read_small(path, log, sizeof(log));
		size_t len = strlen(log);
		while (len && log[len - 1] == '\n')
			log[--len] = '\0';
		char *last = strrchr(log, '\n');
		last = last ? last + 1 : log;
		char *msg = strstr(last, "msg=");
		dprintf(sh->sync_fd, "ERR runc create: exit %d: %.300s", exit_code_of(status), msg ? msg + 4 : last);
		_exit(1);
	}
	if (sh->console >= 0) {
		take_console(sh, sh->console);
		sh->console = -1;
	}
	dprintf(sh->sync_fd, "OK %d", (int)sh->ctr_pid);
	close(sh->sync_fd);
	sh->sync_fd = -1;
	for (size_t k = 0; k < sh->n_early; k++)
		if (sh->early_pid[k] == sh->ctr_pid) {
			sh->ctr_done = true;
			sh->ctr_status = sh->early_status[k];
			sh->exit_seen = agent_ctr_mono_s();
		}
}

static void reap(struct shepherd *sh)
{
	int status;
	pid_t w;

	while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
		if (w == sh->runc_pid && !sh->runc_done) {
			runc_create_done(sh, status);
		} else if (sh->ctr_pid > 0 && w == sh->ctr_pid) {
			sh->ctr_done = true;
			sh->ctr_status = status;
			sh->exit_seen = agent_ctr_mono_s();
		} else if (sh->ctr_pid == 0 && sh->n_early < 8) {
			sh->early_pid[sh->n_early] = w;
			sh->early_status[sh->n_early++] = status;
		}
	}
}

/* Read what the container wrote into records; idle: flush partial lines. */
static void pump_output(struct shepherd *sh, bool idle)
{
	for (int i = 0; i < 3; i++) {
		if (sh->pfd[i].fd < 0 || !(sh->pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		uint8_t buf[8192];
		ssize_t got = read(sh->pfd[i].fd, buf, sizeof(buf));
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0) { /* EOF, or EIO: the pty's slave is closed everywhere */
			(void)agent_log_flush(&sh->streams[i], agent_ctr_wall_ns(), &sh->rec);
			close(sh->pfd[i].fd);
			sh->pfd[i].fd = -1;
			if (i == 2)
				tty_gone(sh);
		} else {
			(void)agent_log_feed(&sh->streams[i], buf, (size_t)got, agent_ctr_wall_ns(), &sh->rec);
		}
	}
	if (idle)
		for (int i = 0; i < 3; i++)
			(void)agent_log_flush(&sh->streams[i], agent_ctr_wall_ns(), &sh->rec);
	write_log(sh->log_fd, &sh->rec);
}

void agent_shepherd_run(const struct agent_ctr_env *env, const char *id, const char *dir, int sync_fd)
{
	char log_path[600], exit_path[600], text[64];
	struct shepherd sh = { .dir = dir, .sync_fd = sync_fd, .console = -1,
			       .pfd = { [2] = { .fd = -1 }, [3] = { .fd = -1 } },
			       .streams = { { .name = "stdout" }, { .name = "stderr" }, { .name = "stdout" } } };

	prctl(PR_SET_CHILD_SUBREAPER, 1);
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	snprintf(exit_path, sizeof(exit_path), "%s/exit", dir);
	sh.tty = spec_has(dir, AGENT_TTY_ANNOTATION);
	sh.dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	sh.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int rc = sh.log_fd < 0 || sh.dirfd < 0 ? -errno : spawn_runc_create(env, id, &sh, &sh.console);
	if (rc < 0) {
		dprintf(sync_fd, "ERR log, pipes, console socket or fork: %s", strerror(-rc));
		_exit(1);
	}
	for (;;) {
		int n = poll(sh.pfd, 4, IDLE_FLUSH_MS);
		if (n < 0 && errno != EINTR && !sh.runc_done)
			break;
		pump_output(&sh, n == 0);
		if (n > 0 && sh.pfd[3].fd >= 0 && (sh.pfd[3].revents & POLLIN))
			serve_tty(&sh);
		reap(&sh);
		check_stdin_closed(&sh);
		if (sh.ctr_done && ((sh.pfd[0].fd < 0 && sh.pfd[1].fd < 0 && sh.pfd[2].fd < 0) ||
				    agent_ctr_mono_s() - sh.exit_seen > EXIT_GRACE_MS / 1000.0))
			break;
	}
	tty_gone(&sh);
	for (int i = 0; i < 3; i++)
		(void)agent_log_flush(&sh.streams[i], agent_ctr_wall_ns(), &sh.rec);
	write_log(sh.log_fd, &sh.rec);
	agent_buf_free(&sh.rec);
	fsync(sh.log_fd);
	close(sh.log_fd);
	snprintf(text, sizeof(text), "%d %llu\n", exit_code_of(sh.ctr_status), (unsigned long long)agent_ctr_wall_ns());
	(void)agent_ctr_write_small(exit_path, text);
	_exit(0);
}
