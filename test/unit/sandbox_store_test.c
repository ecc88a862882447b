/* Pod manager state (cri/sandbox_store.c, sandbox_manager.c): records survive a close/open cycle
 * (a daemon restart), a dead infra process turns a READY pod NOTREADY, an exit file written while
 * the daemon was away is applied, interrupted creations are cleaned up, ids resolve by prefix,
 * label selectors match. No runc or processes needed. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "util.h"

static char workdir[] = "/tmp/sandbox-store-test-XXXXXX";
static struct vgpu_config cfg;
static struct vgpu_daemon d;

static void open_pods(void)
{
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_pods_open(&d, &err) == 0, "open: %s", err.msg);
}

static void setup(void)
{
	strcpy(workdir, "/tmp/sandbox-store-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(workdir));
	vgpu_config_defaults(&cfg);
	free(cfg.state_dir);
	free(cfg.run_dir);
	cfg.state_dir = vgpu_asprintf("%s/state", workdir);
	cfg.run_dir = vgpu_asprintf("%s/run", workdir);
	free(cfg.handlers[0].runtime_root);
	cfg.handlers[0].runtime_root = vgpu_asprintf("%s/runc", workdir);
	memset(&d, 0, sizeof(d));
	d.cfg = &cfg;
	open_pods();
}

static void teardown(void)
{
	vgpu_pods_close(&d);
	vgpu_config_free(&cfg);
	char *cmd = vgpu_asprintf("rm -rf %s", workdir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

static Runtime__V1__PodSandboxConfig *pod_config(const char *name)
{
	Runtime__V1__PodSandboxConfig *c = vgpu_calloc(1, sizeof(*c));
	runtime__v1__pod_sandbox_config__init(c);
	c->metadata = vgpu_calloc(1, sizeof(*c->metadata));
	runtime__v1__pod_sandbox_metadata__init(c->metadata);
	c->metadata->name = vgpu_strdup(name);
	c->metadata->namespace_ = vgpu_strdup("ns");
	c->metadata->uid = vgpu_strdup("uid");
	c->n_labels = 1;
	c->labels = vgpu_calloc(1, sizeof(*c->labels));
	c->labels[0] = vgpu_calloc(1, sizeof(*c->labels[0]));
	runtime__v1__pod_sandbox_config__labels_entry__init(c->labels[0]);
	c->labels[0]->key = vgpu_strdup("app");
	c->labels[0]->value = vgpu_strdup(name);
	return c;
}

static struct vgpu_sandbox *add_sandbox(const char *name, pid_t infra)
{
	struct vgpu_pod_manager *m = d.pods;
	struct vgpu_sandbox *s = vgpu_sandbox_alloc();
	vgpu_new_id(s->id);
	s->config = pod_config(name);
	s->handler = vgpu_strdup("runc");
	s->created_at = vgpu_wall_ns();
	s->dir = vgpu_asprintf("%s/%s", m->sandbox_dir, s->id);
	s->run_dir = vgpu_asprintf("%s/%s", m->run_sandbox_dir, s->id);
	s->shm_path = vgpu_strdup("/dev/shm");
	s->cgroup_parent = vgpu_asprintf("/vgpu-cri-test/%s", s->id);
	s->phase = VGPU_PHASE_LIVE;
	s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
	s->infra_pid = infra;
	s->infra_start = vgpu_proc_start_time(infra);
	ck_assert_int_eq(vgpu_mkdir_p(s->dir, 0700, NULL), 0);
	ck_assert_int_eq(vgpu_sandbox_save_config(m, s, NULL), 0);
	ck_assert_int_eq(vgpu_sandbox_save(m, s, NULL), 0);
	vgpu_sandbox_link(m, s);
	return s;
}

static struct vgpu_container *add_container(struct vgpu_sandbox *s, const char *name,
					    Runtime__V1__ContainerState state)
{
	struct vgpu_pod_manager *m = d.pods;
	struct vgpu_container *c = vgpu_container_alloc();
	vgpu_new_id(c->id);
	memcpy(c->sandbox_id, s->id, sizeof(c->sandbox_id));
	c->config = vgpu_calloc(1, sizeof(*c->config));
	runtime__v1__container_config__init(c->config);
	c->config->metadata = vgpu_calloc(1, sizeof(*c->config->metadata));
	runtime__v1__container_metadata__init(c->config->metadata);
	c->config->metadata->name = vgpu_strdup(name);
	c->image_id = vgpu_strdup("sha256:abc");
	c->log_path = vgpu_strdup("");
	c->dir = vgpu_asprintf("%s/%s", m->container_dir, c->id);
	c->cgroups_path = vgpu_strdup("/x");
	c->created_at = vgpu_wall_ns();
	c->phase = VGPU_PHASE_LIVE;
	c->state = state;
	c->started_at = state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED ? 0 : c->created_at + 1;
	/* "monitor": this test process, which is alive */
	c->monitor_pid = getpid();
	c->monitor_start = vgpu_proc_start_time(getpid());
	ck_assert_int_eq(vgpu_mkdir_p(c->dir, 0700, NULL), 0);
	ck_assert_int_eq(vgpu_container_save_config(m, c, NULL), 0);
	ck_assert_int_eq(vgpu_container_save(m, c, NULL), 0);
	vgpu_container_link(m, c);
	return c;
}

static void reopen(void)
{
	vgpu_pods_close(&d);
	open_pods();
}

START_TEST(test_roundtrip_and_recovery)
{
	char id_ready[VGPU_ID_LEN + 1], id_dead[VGPU_ID_LEN + 1], c_run[VGPU_ID_LEN + 1], c_exit[VGPU_ID_LEN + 1];
	struct vgpu_sandbox *s1 = add_sandbox("alive", getpid());
	struct vgpu_sandbox *s2 = add_sandbox("dead", 999999); /* no such process */
	memcpy(id_ready, s1->id, sizeof(id_ready));
	memcpy(id_dead, s2->id, sizeof(id_dead));
	struct vgpu_container *c1 = add_container(s1, "runs", RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING);
	struct vgpu_container *c2 = add_container(s1, "exits", RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING);
	memcpy(c_run, c1->id, sizeof(c_run));
	memcpy(c_exit, c2->id, sizeof(c_exit));
	vgpu_sandbox_put(d.pods, s1);
	vgpu_sandbox_put(d.pods, s2);
	vgpu_container_put(d.pods, c1);
	vgpu_container_put(d.pods, c2);
	vgpu_pods_close(&d);
	/* while the daemon is down, the monitor of c2 records its exit */
	char *exit_path = vgpu_asprintf("%s/state/exits/%s", workdir, c_exit);
	const char *text = "{\"exit_code\": 3, \"signal\": 0, \"finished_at\": 4102444800000000000}\n";
	ck_assert_int_eq(vgpu_write_file_atomic(exit_path, text, strlen(text), 0600, NULL), 0);
	free(exit_path);
	open_pods();

	struct vgpu_pod_manager *m = d.pods;
	struct vgpu_sandbox *s;
	ck_assert_int_eq(vgpu_sandbox_get(m, id_ready, &s, NULL), 0);
	pthread_mutex_lock(&m->lock);
	vgpu_sandbox_refresh_locked(s);
	ck_assert_int_eq(s->state, RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY);
	ck_assert_str_eq(s->config->metadata->name, "alive");
	pthread_mutex_unlock(&m->lock);
	vgpu_sandbox_put(m, s);
	ck_assert_int_eq(vgpu_sandbox_get(m, id_dead, &s, NULL), 0);
	ck_assert_int_eq(s->state, RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY);
	vgpu_sandbox_put(m, s);
	struct vgpu_container *c;
	ck_assert_int_eq(vgpu_container_get(m, c_run, &c, NULL), 0);
	ck_assert_int_eq(c->state, RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING);
	ck_assert_str_eq(c->config->metadata->name, "runs");
	ck_assert_str_eq(c->sandbox_id, id_ready);
	vgpu_container_put(m, c);
	ck_assert_int_eq(vgpu_container_get(m, c_exit, &c, NULL), 0);
	ck_assert_int_eq(c->state, RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED);
	ck_assert_int_eq(c->exit_code, 3);
	ck_assert_int_eq(c->finished_at, 4102444800000000000LL);
	ck_assert_str_eq(c->reason, "Error");
	vgpu_container_put(m, c);
	/* and that is persisted: another restart shows the same */
	reopen();
	ck_assert_int_eq(vgpu_container_get(d.pods, c_exit, &c, NULL), 0);
	ck_assert_int_eq(c->exit_code, 3);
	vgpu_container_put(d.pods, c);
}
END_TEST

START_TEST(test_interrupted_creation_is_cleaned)
{
	struct vgpu_sandbox *s = add_sandbox("half", 999999);
	pthread_mutex_lock(&d.pods->lock);
	s->phase = VGPU_PHASE_CREATING;
	pthread_mutex_unlock(&d.pods->lock);
	ck_assert_int_eq(vgpu_sandbox_save(d.pods, s, NULL), 0);
	char *dir = vgpu_strdup(s->dir);
	char id[VGPU_ID_LEN + 1];
	memcpy(id, s->id, sizeof(id));
	vgpu_sandbox_put(d.pods, s);
	reopen();
	ck_assert_int_eq(access(dir, F_OK), -1);
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_sandbox_get(d.pods, id, &s, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, id));
	free(dir);
}
END_TEST

START_TEST(test_prefix_lookup_and_labels)
{
	struct vgpu_sandbox *a = add_sandbox("a", getpid()), *b = add_sandbox("b", getpid());
	struct vgpu_sandbox *s;
	char prefix[13];
	memcpy(prefix, a->id, 12);
	prefix[12] = '\0';
	ck_assert_int_eq(vgpu_sandbox_get(d.pods, prefix, &s, NULL), 0);
	ck_assert_ptr_eq(s, a);
	vgpu_sandbox_put(d.pods, s);
	ck_assert_int_eq(vgpu_sandbox_get(d.pods, "", &s, NULL), -EINVAL);
	/* a prefix shared by both ("" handled above; 0 chars after a common first char is ambiguous) */
	if (a->id[0] == b->id[0]) {
		char one[2] = { a->id[0], 0 };
		ck_assert_int_eq(vgpu_sandbox_get(d.pods, one, &s, NULL), -ENOENT);
	}
	Runtime__V1__PodSandboxConfig__LabelsEntry want = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
	want.key = "app";
	want.value = "a";
	void *sel[] = { &want };
	ck_assert(vgpu_labels_match((void *const *)a->config->labels, a->config->n_labels, sel, 1));
	ck_assert(!vgpu_labels_match((void *const *)b->config->labels, b->config->n_labels, sel, 1));
	ck_assert(vgpu_labels_match((void *const *)b->config->labels, b->config->n_labels, sel, 0));
	vgpu_sandbox_put(d.pods, a);
	vgpu_sandbox_put(d.pods, b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sandbox_store");
	TCase *tc = tcase_create("roundtrip_and_recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_roundtrip_and_recovery);
	suite_add_tcase(s, tc);
	tc = tcase_create("interrupted_creation");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_interrupted_creation_is_cleaned);
	suite_add_tcase(s, tc);
	tc = tcase_create("lookup_and_labels");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_prefix_lookup_and_labels);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
