/*
 * schedule: Send-At, Rate and Send-By as a start and a spacing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "intake/schedule.h"
#include "intake/submission.h"

static void
rates(void **state)
{
	static const struct { const char *in; double want; } ok[] = {
		{ "300/h", 300.0 / 3600 }, { "20/min", 20.0 / 60 }, { " 2 / s ", 2 },
		{ "1/m", 1.0 / 60 }, { "0.5/s", 0.5 }, { "3600/hour", 1 },
	};
	static const char *bad[] = { "", "abc", "10", "10/", "10/week", "-1/s", "0/s", "/h" };
	const char *why;
	double r;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(schedule_parse_rate(ok[i].in, &r, &why), 0);
		assert_true(r > ok[i].want * 0.999999 && r < ok[i].want * 1.000001);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(schedule_parse_rate(bad[i], &r, &why), -1);
		assert_non_null(strstr(why, "Rate:"));
	}
}

static void
plans(void **state)
{
	struct submission s;
	struct schedule p;
	char err[200];
	double now = 1900000000;	/* 2030-03-17 17:46:40 UTC */

	(void)state;
	setenv("TZ", "Asia/Tokyo", 1);
	tzset();
	memset(&s, 0, sizeof(s));
	assert_int_equal(schedule_plan(&s, 10, now, &p, err, sizeof(err)), 0);
	assert_true(p.start == now && p.spacing == 0);

	s.rate = "120/min";
	assert_int_equal(schedule_plan(&s, 10, now, &p, err, sizeof(err)), 0);
	assert_true(p.spacing > 0.4999 && p.spacing < 0.5001);

	/* Send-By an hour after Send-At: 100 recipients 36 s apart. */
	s.rate = NULL;
	s.send_at = "2030-03-18T10:00:00+09:00";
	s.send_by = "2030-03-18 11:00";
	assert_int_equal(schedule_plan(&s, 100, now, &p, err, sizeof(err)), 0);
	assert_true(p.start == 1900000000 + 7 * 3600 + 13 * 60 + 20);
	assert_true(p.spacing > 35.999 && p.spacing < 36.001);

	s.rate = "1/s";
	assert_int_equal(schedule_plan(&s, 100, now, &p, err, sizeof(err)), -1);
	assert_string_equal(err, "give Rate or Send-By, not both");

	s.rate = NULL;
	s.send_by = "2030-03-18 09:59";
	assert_int_equal(schedule_plan(&s, 100, now, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Send-By: must be after"));

	/* A start in the past is now. */
	s.send_by = NULL;
	s.send_at = "2020-01-01 00:00";
	assert_int_equal(schedule_plan(&s, 1, now, &p, err, sizeof(err)), 0);
	assert_true(p.start == now);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rates),
		cmocka_unit_test(plans),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
