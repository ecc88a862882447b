/* vgpu-pause: the infra process of a runc-handler pod. It creates the pod's namespaces (network with
 * loopback up, IPC, UTS with the pod's hostname, PID when the pod shares one), applies the pod's
 * namespaced sysctls inside them, then forks the long-lived holder and prints its pid on stdout.
 * Containers join the namespaces through /proc/<pid>/ns/<kind>. The holder is not the daemon's child,
 * so it outlives daemon restarts; it exits on SIGTERM/SIGINT and reaps orphans when it is PID 1.
 *
 * Usage: vgpu-pause [--id SANDBOX] [--net] [--ipc] [--uts] [--pid] [--hostname NAME] [--sysctl KEY=VALUE]...
 * --id is not used here: it stays in the command line of both processes, so that a daemon that died
 * before it learnt the holder's pid finds the holder at start-up (vgpu_pods_kill_helpers). */

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "vgpu-pause: %s: %s\n", what, strerror(errno));
	return 1;
}

static int loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

static int set_sysctl(const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv || strstr(kv, "..") || strchr(kv, '/')) {
		errno = EINVAL;
		return -1;
	}
	char path[512] = "/proc/sys/";
	size_t off = strlen(path);
	for (const char *p = kv; p < eq && off < sizeof(path) - 1; p++)
		path[off++] = *p == '.' ? '/' : *p;
	path[off] = '\0';
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, eq + 1, strlen(eq + 1));
	int e = errno;
	close(fd);
	errno = e;
	return n < 0 ? -1 : 0;
}

/* With a shared PID namespace the holder is PID 1 of the pod's containers, and a container allowed
 * to trace it (CAP_SYS_PTRACE) could walk the host's filesystem through /proc/1/root. So the
 * holder leaves it: a private mount namespace whose root is an empty read-only tmpfs. */
static int leave_host_root(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	if (mount("vgpu-pause", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") < 0)
		return -1;
	if (chdir("/tmp") < 0)
		return -1;
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		if (umount2(".", MNT_DETACH) < 0)
			return -1;
	} else if (chroot(".") < 0) { /* a root that cannot be pivoted (initramfs): chroot suffices */
		return -1;
	}
	if (chdir("/") < 0)
		return -1;
	return mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static volatile sig_atomic_t stop;
static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void hold(void)
{
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	while (!stop) {
		/* As PID 1 of a shared pid namespace, orphans land here: reap them. */
		pid_t pid = waitpid(-1, NULL, 0);
		if (pid < 0 && errno == ECHILD)
			pause();
	}
	_exit(0);
}

static int run(int argc, char **argv)
{
	int flags = 0;
	const char *hostname = NULL;
	const char *sysctls[64];
	int n_sysctls = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--net"))
			flags |= CLONE_NEWNET;
		else if (!strcmp(argv[i], "--ipc"))
			flags |= CLONE_NEWIPC;
		else if (!strcmp(argv[i], "--uts"))
			flags |= CLONE_NEWUTS;
		else if (!strcmp(argv[i], "--pid"))
			flags |= CLONE_NEWPID;
		else if (!strcmp(argv[i], "--id") && i + 1 < argc)
			i++;
		else if (!strcmp(argv[i], "--hostname") && i + 1 < argc)
			hostname = argv[++i];
		else if (!strcmp(argv[i], "--sysctl") && i + 1 < argc && n_sysctls < 64)
			sysctls[n_sysctls++] = argv[++i];
		else {
			fprintf(stderr, "vgpu-pause: bad argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (flags && unshare(flags) < 0)
		return fail("unshare");
	if (hostname && (flags & CLONE_NEWUTS) && sethostname(hostname, strlen(hostname)) < 0)
		return fail("sethostname");
	if ((flags & CLONE_NEWNET) && loopback_up() < 0)
		return fail("bring up lo");
	for (int i = 0; i < n_sysctls; i++)
		if (set_sysctl(sysctls[i]) < 0) {
			fprintf(stderr, "vgpu-pause: sysctl %s: %s\n", sysctls[i], strerror(errno));
			return 1;
		}
	/* The holder leaves the host's root after the fork and says so over ready; /dev/null is
	 * opened before, while it can still be found. */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0)
		return fail("pipe");
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		close(ready[0]);
		setsid();
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		if (leave_host_root() < 0 || write(ready[1], "k", 1) != 1)
			_exit(1);
		close(ready[1]);
		hold();
	}
	close(ready[1]);
	char ok = 0;
	ssize_t n;
	while ((n = read(ready[0], &ok, 1)) < 0 && errno == EINTR)
		;
	if (n != 1) {
		waitpid(pid, NULL, 0);
		errno = EPERM;
		return fail("holder: empty root (mount namespace, tmpfs, pivot_root)");
	}
	printf("%d\n", (int)pid);
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	/* _exit, not exit: after unshare(CLONE_NEWPID) a sanitizer build's leak check at exit spawns its
	 * helper into the new namespace, where it cannot see this process, and hangs; nothing but stdio
	 * needs flushing here */
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
}
