/* CRI log record framing for the guest agent (format in agent_log.h). */
#include "agent_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void agent_log_timestamp(char out[AGENT_LOG_TS_LEN], uint64_t wall_ns)
{
	time_t secs = (time_t)(wall_ns / 1000000000ULL);
	struct tm tm;

	if (!gmtime_r(&secs, &tm))
		memset(&tm, 0, sizeof(tm));
	snprintf(out, AGENT_LOG_TS_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", (tm.tm_year + 1900) % 10000,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ns % 1000000000ULL));
}

static int record(const char *stream, bool full, const uint8_t *line, size_t n, uint64_t wall_ns,
		  struct agent_buf *out)
{
	char head[AGENT_LOG_TS_LEN + 16];
	char ts[AGENT_LOG_TS_LEN];
	int rc;

	agent_log_timestamp(ts, wall_ns);
	snprintf(head, sizeof(head), "%s %s %c ", ts, stream, full ? 'F' : 'P');
	rc = agent_put_bytes(out, head, strlen(head));
	if (rc == 0)
		rc = agent_put_bytes(out, line, n);
	if (rc == 0)
		rc = agent_put_bytes(out, "\n", 1);
	return rc;
}

int agent_log_feed(struct agent_log_stream *st, const uint8_t *data, size_t len, uint64_t wall_ns,
		   struct agent_buf *out)
{
	while (len > 0) {
		size_t room = sizeof(st->pending) - st->len;
		const uint8_t *nl = memchr(data, '\n', len < room ? len : room);
		int rc;

		if (nl) {
			size_t take = (size_t)(nl - data);
			memcpy(st->pending + st->len, data, take);
			st->len += take;
			rc = record(st->name, true, st->pending, st->len, wall_ns, out);
			st->len = 0;
			data += take + 1;
			len -= take + 1;
		} else {
			size_t take = len < room ? len : room;
			memcpy(st->pending + st->len, data, take);
			st->len += take;
			data += take;
			len -= take;
			if (st->len < sizeof(st->pending))
				continue;
			rc = agent_log_flush(st, wall_ns, out);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int agent_log_flush(struct agent_log_stream *st, uint64_t wall_ns, struct agent_buf *out)
{
	int rc;

	if (st->len == 0)
		return 0;
	rc = record(st->name, false, st->pending, st->len, wall_ns, out);
	st->len = 0;
	return rc;
}
