/*
 * test_metrics: the gateway's counters in the Prometheus text format:
 * label values escaped (backslash, double quote, newline), one # HELP and
 * # TYPE per family before its samples, counters by destination and
 * outcome, bounce classes, retries, and a cumulative latency histogram
 * whose +Inf bucket equals its count, fed from several threads at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "gateway/metrics.h"

static char *
text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	assert_non_null(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_label_escaping(void **state)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "relay:docomo", "relay:docomo" },
		{ "a\"b", "a\\\"b" },
		{ "back\\slash", "back\\\\slash" },
		{ "two\nlines", "two\\nlines" },
		{ "\\\"\n", "\\\\\\\"\\n" },
		{ "", "" },
		{ "日本語", "日本語" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		metrics_label(b, cases[i].in);
		char *got = text_of(b);
		assert_string_equal(got, cases[i].want);
		free(got);
		evbuffer_free(b);
	}
}

static void *
observe_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		metrics_db_observe("test-db", i % 2 ? 0.0001 : 3.0);
	return NULL;
}

/* The value of the sample line that starts with prefix (name and labels). */
static double
sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	for (; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("no sample %s in:\n%s", prefix, text);
	return -1;
}

static void
test_counters_and_histogram(void **state)
{
	pthread_t t[4];
	struct evbuffer *b = evbuffer_new();
	char *text;

	(void)state;
	metrics_delivery("pace:au", "sent", "");
	metrics_delivery("pace:au", "sent", "");
	metrics_delivery("pace:au", "deferred", "rate-limit");
	metrics_delivery("relay:\"odd\"", "failed", "unknown-user");
	metrics_delivery("pace:au", "cancelled", "");	/* not an attempt's outcome: ignored */
	metrics_suspension("pace:au");
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, observe_many, NULL), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	metrics_write(b);
	text = text_of(b);

	assert_int_equal(metrics_sent("pace:au"), 2);
	assert_int_equal(metrics_sent("relay:nowhere"), 0);
	assert_true(sample(text, "hato_gateway_deliveries_total{dest=\"pace:au\",outcome=\"sent\"}") == 2);
	assert_true(sample(text, "hato_gateway_deliveries_total{dest=\"pace:au\",outcome=\"deferred\"}") == 1);
	assert_true(sample(text, "hato_gateway_deliveries_total{dest=\"relay:\\\"odd\\\"\",outcome=\"failed\"}") == 1);
	assert_true(sample(text, "hato_gateway_retries_total") == 1);
	assert_true(sample(text, "hato_gateway_suspensions_total{dest=\"pace:au\"}") == 1);
	assert_true(sample(text, "hato_gateway_bounces_total{class=\"unknown-user\"}") == 1);
	assert_true(sample(text, "hato_gateway_bounces_total{class=\"rate-limit\"}") == 1);
	assert_true(sample(text, "hato_db_task_seconds_count{worker=\"test-db\"}") == 4000);
	assert_true(sample(text, "hato_db_task_seconds_bucket{worker=\"test-db\",le=\"+Inf\"}") == 4000);
	assert_true(sample(text, "hato_db_task_seconds_bucket{worker=\"test-db\",le=\"0.001\"}") == 2000);
	/* Cumulative: 3 s falls in the 5 s bucket, not the 2.5 s one. */
	assert_true(sample(text, "hato_db_task_seconds_bucket{worker=\"test-db\",le=\"2.5\"}") == 2000);
	assert_true(sample(text, "hato_db_task_seconds_bucket{worker=\"test-db\",le=\"5\"}") == 4000);
	assert_true(sample(text, "hato_db_task_seconds_sum{worker=\"test-db\"}") > 5999);

	/* Each family: HELP then TYPE, once, before its samples. */
	static const char *const families[] = { "hato_gateway_deliveries_total counter",
		"hato_gateway_suspensions_total counter", "hato_gateway_retries_total counter",
		"hato_gateway_bounces_total counter", "hato_db_task_seconds histogram" };
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		char type[128], name[96];
		snprintf(type, sizeof(type), "# TYPE %s\n", families[i]);
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(families[i], " "), families[i]);
		const char *at = strstr(text, type);
		assert_non_null(at);
		assert_null(strstr(at + 1, type));
		char help[128];
		snprintf(help, sizeof(help), "# HELP %s ", name);
		const char *h = strstr(text, help);
		assert_non_null(h);
		assert_true(h < at);
	}
	assert_int_equal(text[strlen(text) - 1], '\n');
	free(text);
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_counters_and_histogram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
