/* The guest agent's container pieces that need no Xen and no runc: CRI log record framing
 * (agent_log.c), exit files, and status and log reads from a container's files (agent_ctr.c). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_ctr.h"
#include "agent/agent_log.h"

#define T0 1764372422123456789ULL /* 2025-11-28T23:27:02.123456789Z */

static char *text_of(struct agent_buf *b)
{
	char *s = calloc(1, b->len + 1);
	memcpy(s, b->data, b->len);
	return s;
}

START_TEST(timestamp_is_rfc3339nano_utc)
{
	char ts[AGENT_LOG_TS_LEN];

	agent_log_timestamp(ts, T0);
	ck_assert_str_eq(ts, "2025-11-28T23:27:02.123456789Z");
	agent_log_timestamp(ts, 5); /* leading zeros of the fraction kept */
	ck_assert_str_eq(ts, "1970-01-01T00:00:00.000000005Z");
}
END_TEST

START_TEST(lines_become_full_records)
{
	struct agent_log_stream st = { .name = "stdout" };
	struct agent_buf out = { 0 };

	ck_assert_int_eq(agent_log_feed(&st, (const uint8_t *)"hello\nwor", 9, T0, &out), 0);
	char *s = text_of(&out);
	ck_assert_str_eq(s, "2025-11-28T23:27:02.123456789Z stdout F hello\n");
	free(s);
	ck_assert_uint_eq(st.len, 3); /* "wor" waits for its newline */
	ck_assert_int_eq(agent_log_feed(&st, (const uint8_t *)"ld\n\n", 4, T0, &out), 0);
	s = text_of(&out);
	ck_assert_str_eq(s, "2025-11-28T23:27:02.123456789Z stdout F hello\n"
			    "2025-11-28T23:27:02.123456789Z stdout F world\n"
			    "2025-11-28T23:27:02.123456789Z stdout F \n");
	free(s);
	agent_buf_free(&out);
}
END_TEST

START_TEST(partial_lines_flush_as_p_records)
{
	struct agent_log_stream st = { .name = "stderr" };
	struct agent_buf out = { 0 };

	ck_assert_int_eq(agent_log_flush(&st, T0, &out), 0); /* nothing pending: nothing written */
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(agent_log_feed(&st, (const uint8_t *)"$ ", 2, T0, &out), 0);
	ck_assert_int_eq(agent_log_flush(&st, T0, &out), 0);
	char *s = text_of(&out);
	ck_assert_str_eq(s, "2025-11-28T23:27:02.123456789Z stderr P $ \n");
	free(s);
	agent_buf_free(&out);
}
END_TEST

START_TEST(long_lines_are_cut_into_p_records)
{
	struct agent_log_stream st = { .name = "stdout" };
	struct agent_buf out = { 0 };
	size_t n = AGENT_LOG_LINE_MAX * 2 + 10;
	uint8_t *line = malloc(n + 1);

	memset(line, 'x', n);
	line[n] = '\n';
	ck_assert_int_eq(agent_log_feed(&st, line, n + 1, T0, &out), 0);
	char *s = text_of(&out);
	size_t p = 0, f = 0;
	for (char *q = s; (q = strstr(q, " stdout ")); q += 8)
		q[8] == 'P' ? p++ : f++;
	ck_assert_uint_eq(p, 2);
	ck_assert_uint_eq(f, 1);
	/* every byte of the line is in the records, none twice */
	size_t xs = 0;
	for (char *q = s; *q; q++)
		xs += *q == 'x';
	ck_assert_uint_eq(xs, n);
	free(s);
	free(line);
	agent_buf_free(&out);
}
END_TEST

START_TEST(exit_files_parse_strictly)
{
	int32_t code;
	uint64_t fin;

	ck_assert_int_eq(agent_ctr_parse_exit("137 1764372422123456789\n", &code, &fin), 0);
	ck_assert_int_eq(code, 137);
	ck_assert_uint_eq(fin, 1764372422123456789ULL);
	ck_assert_int_eq(agent_ctr_parse_exit("0 5", &code, &fin), 0);
	const char *bad[] = { "", "x 5", "1", "1 ", "1 x", "1 5 6", "1 5\n\n", "999 5", " 1 5", NULL };
	for (const char **b = bad; *b; b++)
		ck_assert_msg(agent_ctr_parse_exit(*b, &code, &fin) == -EINVAL, "accepted '%s'", *b);
}
END_TEST

/* A container directory as the shepherd leaves it, without runc. */
static char root[64];
static struct agent_ctr_env env;

static void put(const char *leaf, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/c1/%s", root, leaf);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void setup_dir(void)
{
	char dir[128];
	snprintf(root, sizeof(root), "/tmp/agent_log_test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(dir, sizeof(dir), "%s/c1", root);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	env = (struct agent_ctr_env){ .root = root, .runc = "/nonexistent/runc", .runc_root = root };
}

static void teardown_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(status_follows_the_files)
{
	struct agent_ctr_state st;
	char msg[AGENT_CTR_MSG_MAX];

	ck_assert_int_eq(agent_ctr_status(&env, "nope", &st, msg), -ENOENT);
	ck_assert_int_eq(agent_ctr_status(&env, "c1", &st, msg), 0);
	ck_assert_uint_eq(st.state, AGENT_CTR_CREATED);
	put("pid", "42\n");
	put("started", "1000\n");
	ck_assert_int_eq(agent_ctr_status(&env, "c1", &st, msg), 0);
	ck_assert_uint_eq(st.state, AGENT_CTR_RUNNING);
	ck_assert_int_eq(st.pid, 42);
	ck_assert_uint_eq(st.started_ns, 1000);
	put("exit", "3 2000\n");
	ck_assert_int_eq(agent_ctr_status(&env, "c1", &st, msg), 0);
	ck_assert_uint_eq(st.state, AGENT_CTR_EXITED);
	ck_assert_int_eq(st.exit_code, 3);
	ck_assert_uint_eq(st.finished_ns, 2000);
	put("exit", "garbage");
	ck_assert_int_eq(agent_ctr_status(&env, "c1", &st, msg), 0);
	ck_assert_uint_eq(st.state, AGENT_CTR_UNKNOWN);
}
END_TEST

START_TEST(logs_read_by_offset_until_eof)
{
	struct agent_buf out = { 0 };
	uint64_t next;
	uint32_t eof;
	char msg[AGENT_CTR_MSG_MAX];

	/* no log yet, still running: nothing, not eof */
	ck_assert_int_eq(agent_ctr_logs(&env, "c1", 0, 100, &out, &next, &eof, msg), 0);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_uint_eq(eof, 0);
	put("log", "0123456789");
	ck_assert_int_eq(agent_ctr_logs(&env, "c1", 0, 4, &out, &next, &eof, msg), 0);
	ck_assert_uint_eq(next, 4);
	ck_assert_mem_eq(out.data, "0123", 4);
	ck_assert_uint_eq(eof, 0);
	out.len = 0;
	put("exit", "0 5\n");
	ck_assert_int_eq(agent_ctr_logs(&env, "c1", 4, 4, &out, &next, &eof, msg), 0);
	ck_assert_uint_eq(next, 8);
	ck_assert_uint_eq(eof, 0); /* exited, but two bytes are left */
	out.len = 0;
	ck_assert_int_eq(agent_ctr_logs(&env, "c1", 8, 100, &out, &next, &eof, msg), 0);
	ck_assert_uint_eq(next, 10);
	ck_assert_mem_eq(out.data, "89", 2);
	ck_assert_uint_eq(eof, 1);
	/* an offset past the end is the daemon's mistake, not a crash */
	ck_assert_int_eq(agent_ctr_logs(&env, "c1", 11, 100, &out, &next, &eof, msg), -EINVAL);
	agent_buf_free(&out);
}
END_TEST

START_TEST(remove_of_an_unknown_container_is_done)
{
	char msg[AGENT_CTR_MSG_MAX];

	ck_assert_int_eq(agent_ctr_remove(&env, "never-created", msg), 0);
	ck_assert_int_eq(agent_ctr_start(&env, "never-created", msg), -ENOENT);
	ck_assert_int_eq(agent_ctr_stop(&env, "never-created", 15, 10, msg), -ENOENT);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("agent_log");
	TCase *tc = tcase_create("log_records");
	tcase_add_test(tc, timestamp_is_rfc3339nano_utc);
	tcase_add_test(tc, lines_become_full_records);
	tcase_add_test(tc, partial_lines_flush_as_p_records);
	tcase_add_test(tc, long_lines_are_cut_into_p_records);
	suite_add_tcase(s, tc);
	tc = tcase_create("exit_files");
	tcase_add_test(tc, exit_files_parse_strictly);
	suite_add_tcase(s, tc);
	tc = tcase_create("container_files");
	tcase_add_checked_fixture(tc, setup_dir, teardown_dir);
	tcase_add_test(tc, status_follows_the_files);
	tcase_add_test(tc, logs_read_by_offset_until_eof);
	tcase_add_test(tc, remove_of_an_unknown_container_is_done);
	suite_add_tcase(s, tc);
	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? 1 : 0;
}
