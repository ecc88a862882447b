/* Container user resolution for OCI specs (see oci_spec.h): numeric ids and names looked up in the
 * image's /etc/passwd and /etc/group, read with openat2(RESOLVE_IN_ROOT) so that an image's symlinks
 * can never point the daemon at host files. */
#include "oci_spec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"
#include "util.h"

#define ID_MAX 0x7fffffffLL
#define USER_DB_MAX (64LL << 20) /* larger passwd/group files of an image are not read */

static FILE *open_in_root(const char *rootfs, const char *rel)
{
	if (!rootfs)
		return NULL;
	_cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return NULL;
	/* O_NONBLOCK: an image's FIFO must not block the open (and the CRI worker) forever; only a
	 * regular file of sane size is read, never a device such as a copy of /dev/zero */
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof(how));
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > USER_DB_MAX) {
		close(fd);
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

/* Split a passwd/group line into at most n fields on ':' (in place). */
static size_t split_fields(char *line, char **fields, size_t n)
{
	size_t i = 0;
	line[strcspn(line, "\n")] = '\0';
	while (i < n) {
		fields[i++] = line;
		char *c = strchr(line, ':');
		if (!c)
			break;
		*c = '\0';
		line = c + 1;
	}
	return i;
}

static bool parse_id(const char *s, long long *out)
{
	if (!*s)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0 || v > ID_MAX)
		return false;
	*out = v;
	return true;
}

/* Find a passwd entry by name (name != NULL) or uid. Returns 1 found, 0 not. */
static int passwd_lookup(const char *rootfs, const char *name, long long uid, char **name_out, long long *uid_out,
			 long long *gid_out)
{
	_cleanup_fclose_ FILE *f = open_in_root(rootfs, "etc/passwd");
	if (!f)
		return 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		char *fld[7];
		if (split_fields(line, fld, 7) < 4)
			continue;
		long long u, g;
		if (!parse_id(fld[2], &u) || !parse_id(fld[3], &g))
			continue;
		if (name ? strcmp(fld[0], name) == 0 : u == uid) {
			if (name_out)
				*name_out = vgpu_strdup(fld[0]);
			*uid_out = u;
			*gid_out = g;
			return 1;
		}
	}
	return 0;
}

static int group_lookup(const char *rootfs, const char *name, long long *gid_out)
{
	_cleanup_fclose_ FILE *f = open_in_root(rootfs, "etc/group");
	if (!f)
		return 0;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		char *fld[4];
		long long g;
		if (split_fields(line, fld, 4) >= 3 && strcmp(fld[0], name) == 0 && parse_id(fld[2], &g)) {
			*gid_out = g;
			return 1;
		}
	}
	return 0;
}

static void add_gid(struct vgpu_oci_user *u, long long gid)
{
	for (size_t i = 0; i < u->n_additional; i++)
		if (u->additional[i] == (gid_t)gid)
			return;
	gid_t *n = realloc(u->additional, (u->n_additional + 1) * sizeof(gid_t));
	if (!n)
		abort();
	u->additional = n;
	u->additional[u->n_additional++] = (gid_t)gid;
}

/* Groups in /etc/group that list user name as a member. */
static void member_groups(const char *rootfs, const char *name, struct vgpu_oci_user *u)
{
	_cleanup_fclose_ FILE *f = open_in_root(rootfs, "etc/group");
	if (!f || !name)
		return;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		char *fld[4];
		long long g;
		if (split_fields(line, fld, 4) < 4 || !parse_id(fld[2], &g))
			continue;
		for (char *save = NULL, *m = strtok_r(fld[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
			if (strcmp(m, name) == 0)
				add_gid(u, g);
	}
}

/* "user", "uid", "user:group", "uid:gid" from the image. */
static int resolve_image_user(const char *rootfs, const char *spec, long long *uid, long long *gid,
			      char **name, struct vgpu_err *err)
{
	_cleanup_free_ char *copy = vgpu_strdup(spec);
	char *group = strchr(copy, ':');
	if (group)
		*group++ = '\0';
	long long g = -1;
	if (parse_id(copy, uid)) {
		long long pg;
		if (passwd_lookup(rootfs, NULL, *uid, name, uid, &pg))
			g = pg;
	} else if (!passwd_lookup(rootfs, copy, 0, name, uid, &g)) {
		return vgpu_err_set(err, -EINVAL, "user '%s': no such user in the image's /etc/passwd", copy);
	}
	if (group) {
		if (!parse_id(group, &g) && !group_lookup(rootfs, group, &g))
			return vgpu_err_set(err, -EINVAL, "group '%s': no such group in the image's /etc/group", group);
	}
	*gid = g < 0 ? 0 : g;
	return 0;
}

int vgpu_oci_resolve_user(const char *rootfs, const Runtime__V1__LinuxContainerSecurityContext *sc,
			  const char *image_user, struct vgpu_oci_user *user, struct vgpu_err *err)
{
	memset(user, 0, sizeof(*user));
	long long uid = 0, gid = 0;
	_cleanup_free_ char *name = NULL;
	if (sc && sc->run_as_user) {
		if (sc->run_as_user->value < 0 || sc->run_as_user->value > ID_MAX)
			return vgpu_err_set(err, -EINVAL, "run_as_user %lld out of range", (long long)sc->run_as_user->value);
		uid = sc->run_as_user->value;
		long long pg;
		if (passwd_lookup(rootfs, NULL, uid, &name, &uid, &pg))
			gid = pg;
	} else if (sc && sc->run_as_username && *sc->run_as_username) {
		if (!passwd_lookup(rootfs, sc->run_as_username, 0, &name, &uid, &gid))
			return vgpu_err_set(err, -EINVAL, "run_as_username '%s': no such user in the image's /etc/passwd",
					    sc->run_as_username);
	} else if (image_user && *image_user) {
		int r = resolve_image_user(rootfs, image_user, &uid, &gid, &name, err);
		if (r < 0)
			return r;
	} else {
		name = vgpu_strdup("root");
	}
	if (sc && sc->run_as_group) {
		if (sc->run_as_group->value < 0 || sc->run_as_group->value > ID_MAX)
			return vgpu_err_set(err, -EINVAL, "run_as_group %lld out of range",
					    (long long)sc->run_as_group->value);
		gid = sc->run_as_group->value;
	}
	user->uid = (uid_t)uid;
	user->gid = (gid_t)gid;
	bool strict = sc && sc->supplemental_groups_policy == RUNTIME__V1__SUPPLEMENTAL_GROUPS_POLICY__Strict;
	if (!strict)
		member_groups(rootfs, name, user);
	for (size_t i = 0; sc && i < sc->n_supplemental_groups; i++) {
		if (sc->supplemental_groups[i] < 0 || sc->supplemental_groups[i] > ID_MAX) {
			free(user->additional);
			user->additional = NULL;
			return vgpu_err_set(err, -EINVAL, "supplemental group %lld out of range",
					    (long long)sc->supplemental_groups[i]);
		}
		add_gid(user, sc->supplemental_groups[i]);
	}
	return 0;
}
