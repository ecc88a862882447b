/* Copy-in volumes in the guest (see agent_vol.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent_vol.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define STAGE_PREFIX ".new-"
#define RM_MAX_DEPTH 64

static int fail(char *msg, int rc, const char *fmt, const char *what)
{
	snprintf(msg, AGENT_VOL_MSG_MAX, fmt, what, strerror(-rc));
	return rc;
}

/* Remove name under dfd, recursively, never following a symlink. */
static int rm_at(int dfd, const char *name, int depth)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth > RM_MAX_DEPTH)
		return -ELOOP;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = rm_at(dirfd(d), de->d_name, depth + 1);
	}
	closedir(d);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

/* Open the parent directory of rec's path under base (every component a real directory, no
 * symlink followed) and copy the last component into name. */
static int open_parent(int base, const struct agent_vol_rec *rec, char name[256])
{
	int fd = dup(base);
	size_t start = 0;

	if (fd < 0)
		return -errno;
	for (size_t i = 0; i <= rec->path_len; i++) {
		if (i < rec->path_len && rec->path[i] != '/')
			continue;
		size_t n = i - start;
		memcpy(name, rec->path + start, n);
		name[n] = '\0';
		start = i + 1;
		if (i == rec->path_len)
			break;
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		if (next < 0)
			return e == ELOOP || e == ENOTDIR ? -ENOTDIR : -e;
		fd = next;
	}
	return fd;
}

static int put_record(int base, const struct agent_vol_rec *rec)
{
	char name[256];
	int dfd = open_parent(base, rec, name), rc = 0;

	if (dfd < 0)
		return dfd;
	if (rec->type == AGENT_VOL_DIR) {
		if (mkdirat(dfd, name, 0700) < 0 || fchmodat(dfd, name, rec->mode, 0) < 0)
			rc = -errno;
	} else if (rec->type == AGENT_VOL_LINK) {
		char target[AGENT_VOL_MAX_PATH + 1];
		memcpy(target, rec->data, rec->data_len);
		target[rec->data_len] = '\0';
		if (symlinkat(target, dfd, name) < 0)
			rc = -errno;
	} else {
		int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
		} else {
			rc = write_all(fd, rec->data, rec->data_len);
			if (rc == 0 && fchmod(fd, rec->mode) < 0)
				rc = -errno;
			if (close(fd) < 0 && rc == 0)
				rc = -errno;
		}
	}
	close(dfd);
	return rc;
}

/* Build the stream's tree in the (empty) directory fd base. */
static int build_tree(int base, uint32_t flags, const uint8_t *stream, size_t len, char *msg)
{
	struct agent_reader r = { stream, len };
	struct agent_vol_rec rec;
	size_t entries = 0, bytes = 0;
	int rc;

	while ((rc = agent_vol_rec_next(&r, &rec)) == 1) {
		char what[80];
		snprintf(what, sizeof(what), "%.*s", (int)(rec.path_len > 64 ? 64 : rec.path_len), rec.path);
		if (++entries > AGENT_VOL_MAX_ENTRIES || __builtin_add_overflow(bytes, rec.data_len, &bytes) ||
		    bytes > AGENT_VOL_MAX_BYTES)
			return fail(msg, -EFBIG, "%s: %s (volume over its limits)", what);
		if ((flags & AGENT_VOL_ISFILE) &&
		    (rec.type != AGENT_VOL_FILE || entries > 1 || rec.path_len != strlen(AGENT_VOL_FILE_NAME) ||
		     memcmp(rec.path, AGENT_VOL_FILE_NAME, rec.path_len) != 0))
			return fail(msg, -EPROTO, "%s: %s (a file volume is one record named \"file\")", what);
		if ((rc = put_record(base, &rec)) < 0)
			return fail(msg, rc, "write %s: %s", what);
	}
	if (rc < 0)
		return fail(msg, rc, "%s: %s", "malformed record stream");
	if ((flags & AGENT_VOL_ISFILE) && entries != 1)
		return fail(msg, -EPROTO, "%s: %s", "a file volume without its file");
	return 0;
}

/* Rewrite key/file from stage/file in place. */
static int refill_file(int stage, int vol)
{
	int in = openat(stage, AGENT_VOL_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = openat(vol, AGENT_VOL_FILE_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return -e;
	}
	uint8_t buf[16384];
	ssize_t n;
	int rc = 0;
	while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0)
			rc = errno == EINTR ? 0 : -errno;
		else
			rc = write_all(out, buf, (size_t)n);
	}
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int list_names(int dfd, char ***names_out, size_t *n_out)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	char **names = NULL;
	size_t n = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char **more = realloc(names, (n + 1) * sizeof(*names));
		char *copy = strdup(de->d_name);
		if (!more || !copy) {
			free(copy);
			names = more ? more : names;
			rc = -ENOMEM;
			break;
		}
		names = more;
		names[n++] = copy;
	}
	closedir(d);
	*names_out = names;
	*n_out = n;
	return rc;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Mirror stage's top-level entries into vol: new names first, then swaps, then removals. */
static int swap_in(int stage, int vol)
{
	char **names = NULL, **old = NULL;
	size_t n = 0, n_old = 0;
	int rc = list_names(stage, &names, &n);
	if (rc == 0)
		rc = list_names(vol, &old, &n_old);
	for (int pass = 0; rc == 0 && pass < 2; pass++) {
		for (size_t i = 0; rc == 0 && i < n; i++) {
			int exists = 0;
			for (size_t k = 0; k < n_old && !exists; k++)
				exists = strcmp(names[i], old[k]) == 0;
			if (pass == 0 && !exists && renameat(stage, names[i], vol, names[i]) < 0)
				rc = -errno;
			if (pass == 1 && exists &&
			    syscall(SYS_renameat2, stage, names[i], vol, names[i], RENAME_EXCHANGE) < 0)
				rc = -errno;
		}
	}
	for (size_t i = 0; rc == 0 && i < n_old; i++) {
		int keep = 0;
		for (size_t k = 0; k < n && !keep; k++)
			keep = strcmp(old[i], names[k]) == 0;
		if (!keep)
			rc = rm_at(vol, old[i], 0);
	}
	free_names(names, n);
	free_names(old, n_old);
	return rc;
}

int agent_vol_apply(int root_fd, const char *key, uint32_t flags, const uint8_t *stream, size_t len,
		    char msg[AGENT_VOL_MSG_MAX])
{
	char stage_name[sizeof(STAGE_PREFIX) + AGENT_MAX_ID_LEN];
	struct stat st;
	int rc;

	msg[0] = '\0';
	if (!agent_vol_key_ok(key, strlen(key)))
		return fail(msg, -EINVAL, "volume key %s: %s", "?");
	int exists = fstatat(root_fd, key, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && !S_ISDIR(st.st_mode))
		return fail(msg, -ENOTDIR, "volume %s: %s", key);
	if (exists && !(flags & AGENT_VOL_REPLACE)) {
		/* shared writable content (emptyDir): the first container's copy stays */
		snprintf(msg, AGENT_VOL_MSG_MAX, "kept (already in the pod)");
		return 0;
	}
	snprintf(stage_name, sizeof(stage_name), STAGE_PREFIX "%s", key);
	if ((rc = rm_at(root_fd, stage_name, 0)) < 0)
		return fail(msg, rc, "remove stale %s: %s", stage_name);
	if (mkdirat(root_fd, stage_name, 0755) < 0)
		return fail(msg, -errno, "mkdir %s: %s", stage_name);
	int stage = openat(root_fd, stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (stage < 0) {
		rc = fail(msg, -errno, "open %s: %s", stage_name);
		(void)rm_at(root_fd, stage_name, 0);
		return rc;
	}
	if ((rc = build_tree(stage, flags, stream, len, msg)) == 0) {
		if (!exists) {
			if (renameat(root_fd, stage_name, root_fd, key) < 0)
				rc = fail(msg, -errno, "rename to %s: %s", key);
		} else {
			int vol = openat(root_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (vol < 0)
				rc = -errno;
			else
				rc = flags & AGENT_VOL_ISFILE ? refill_file(stage, vol) : swap_in(stage, vol);
			if (vol >= 0)
				close(vol);
			if (rc < 0)
				fail(msg, rc, "update %s: %s", key);
		}
	}
	close(stage);
	(void)rm_at(root_fd, stage_name, 0);
	return rc;
}

void agent_vol_pending_free(struct agent_vol_pending *p)
{
	agent_buf_free(&p->stream);
	memset(p, 0, sizeof(*p));
}

int agent_vol_put(struct agent_vol_pending *p, int root_fd, const struct agent_vol_put *put,
		  char msg[AGENT_VOL_MSG_MAX])
{
	msg[0] = '\0';
	if (put->flags & AGENT_VOL_BEGIN) {
		agent_vol_pending_free(p);
		p->active = 1;
		snprintf(p->key, sizeof(p->key), "%s", put->key);
		p->flags = put->flags & ~(AGENT_VOL_BEGIN | AGENT_VOL_END);
	} else if (!p->active || strcmp(p->key, put->key) != 0) {
		return fail(msg, -EPROTO, "volume %s: %s (a chunk without BEGIN)", put->key);
	}
	size_t need;
	if (__builtin_add_overflow(p->stream.len, put->len, &need) || need > AGENT_VOL_MAX_STREAM) {
		agent_vol_pending_free(p);
		return fail(msg, -EFBIG, "volume %s: %s (stream over its limit)", put->key);
	}
	if (put->len) {
		if (need > p->stream.cap) {
			size_t cap = p->stream.cap ? p->stream.cap : 65536;
			while (cap < need)
				cap *= 2;
			uint8_t *data = realloc(p->stream.data, cap);
			if (!data) {
				agent_vol_pending_free(p);
				return fail(msg, -ENOMEM, "volume %s: %s", put->key);
			}
			p->stream.data = data;
			p->stream.cap = cap;
		}
		memcpy(p->stream.data + p->stream.len, put->data, put->len);
		p->stream.len = need;
	}
	if (!(put->flags & AGENT_VOL_END))
		return 0;
	int rc = agent_vol_apply(root_fd, p->key, p->flags, p->stream.data, p->stream.len, msg);
	agent_vol_pending_free(p);
	return rc;
}

int agent_vol_get(int root_fd, const char *key, struct agent_buf *out, uint32_t *flags, char msg[AGENT_VOL_MSG_MAX])
{
	uint8_t buf[16384];
	size_t got = 0;
	struct stat st;
	int rc = 0;

	msg[0] = '\0';
	*flags = 0;
	if (!agent_vol_key_ok(key, strlen(key)))
		return fail(msg, -EINVAL, "volume key %s: %s", "?");
	int vol = openat(root_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (vol < 0)
		return fail(msg, errno == ELOOP || errno == ENOTDIR ? -ELOOP : -errno, "volume %s: %s", key);
	/* O_NONBLOCK: a fifo put in its place must not hang the agent */
	int fd = openat(vol, AGENT_VOL_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	int e = errno;
	close(vol);
	if (fd < 0)
		return fail(msg, -e, e == ELOOP ? "volume %s: %s (its file is a symlink: refused)" : "volume %s: %s", key);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(msg, -EINVAL, "volume %s: %s (its file is not a regular file)", key);
	}
	/* one byte past the cap tells a longer file */
	while (rc == 0 && got <= AGENT_VOL_GET_MAX) {
		size_t want = AGENT_VOL_GET_MAX + 1 - got;
		ssize_t n = read(fd, buf, want < sizeof(buf) ? want : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		size_t keep = (size_t)n;
		if (got + keep > AGENT_VOL_GET_MAX) {
			keep = AGENT_VOL_GET_MAX - got;
			*flags |= AGENT_VOL_GET_TRUNCATED;
		}
		rc = agent_put_bytes(out, buf, keep);
		got += (size_t)n;
	}
	close(fd);
	if (rc < 0)
		return fail(msg, rc, "read volume %s: %s", key);
	return 0;
}
