/*
 * test_verp: bounce addresses and unsubscribe tokens carry HMAC-SHA256
 * (80 bits, base32) of the delivery under the site secret. The expected
 * MACs are computed here with OpenSSL's one-shot HMAC(), independently of
 * the keyed context that mail/verp.c keeps; calls in a row, a change of
 * key and a key too long for that context must all give the same answer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mail/verp.h"

static void
expect_mac(const unsigned char *key, size_t keylen, char kind, uint64_t id, char out[17])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char msg[9], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	msg[0] = (unsigned char)kind;
	for (int i = 0; i < 8; i++)
		msg[1 + i] = (unsigned char)(id >> (56 - 8 * i));
	assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, msg, sizeof(msg), md, &mdlen));
	/* The first 80 bits, 5 at a time, most significant first. */
	for (int i = 0; i < 16; i++) {
		unsigned v = 0;
		for (int b = 0; b < 5; b++) {
			int bit = i * 5 + b;
			v = v << 1 | ((md[bit / 8] >> (7 - bit % 8)) & 1);
		}
		out[i] = b32[v];
	}
	out[16] = '\0';
}

static void
check_bounce(const unsigned char *key, size_t keylen, uint64_t id)
{
	char got[64], want[64], m[17];
	uint64_t back = 0;

	expect_mac(key, keylen, 'b', id, m);
	snprintf(want, sizeof(want), "bounce+%llu.%s", (unsigned long long)id, m);
	verp_local(key, keylen, id, got, sizeof(got));
	assert_string_equal(got, want);
	assert_int_equal(verp_parse(key, keylen, got, strlen(got), &back), 0);
	assert_true(back == id);
}

static void
check_unsub(const unsigned char *key, size_t keylen, uint64_t id)
{
	char got[64], want[64], m[17];
	uint64_t back = 0;

	expect_mac(key, keylen, 'u', id, m);
	snprintf(want, sizeof(want), "u%llu.%s", (unsigned long long)id, m);
	unsub_token(key, keylen, id, got, sizeof(got));
	assert_string_equal(got, want);
	assert_int_equal(unsub_parse(key, keylen, got, strlen(got), &back), 0);
	assert_true(back == id);
}

static const unsigned char key1[] = "0123456789abcdef0123456789abcdef-one";
static const unsigned char key2[] = "fedcba9876543210fedcba9876543210-two";

static void
test_matches_hmac(void **state)
{
	(void)state;
	/* Twice in a row: the keyed context starts afresh each time. */
	check_bounce(key1, sizeof(key1) - 1, 42);
	check_bounce(key1, sizeof(key1) - 1, 42);
	check_bounce(key1, sizeof(key1) - 1, UINT64_MAX);
	check_unsub(key1, sizeof(key1) - 1, 7);
	/* Another key, and back. */
	check_bounce(key2, sizeof(key2) - 1, 42);
	check_unsub(key2, sizeof(key2) - 1, 7);
	check_bounce(key1, sizeof(key1) - 1, 43);
}

static void
test_long_key(void **state)
{
	unsigned char key[300];

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 7 + 1);
	check_bounce(key, sizeof(key), 1000);
	check_unsub(key, sizeof(key), 1000);
	check_bounce(key1, sizeof(key1) - 1, 1000);
}

static void
test_refused(void **state)
{
	char s[64];
	size_t n;
	uint64_t id = 0;

	(void)state;
	n = verp_local(key1, sizeof(key1) - 1, 99, s, sizeof(s));
	/* Case does not matter (MTAs may fold it)... */
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
	assert_int_equal(verp_parse(key1, sizeof(key1) - 1, s, n, &id), 0);
	assert_true(id == 99);
	/* ...but another key, another id or a changed MAC does. */
	assert_int_equal(verp_parse(key2, sizeof(key2) - 1, s, n, &id), -1);
	s[strlen("bounce+")] = '8';
	assert_int_equal(verp_parse(key1, sizeof(key1) - 1, s, n, &id), -1);
	n = unsub_token(key1, sizeof(key1) - 1, 5, s, sizeof(s));
	s[n - 1] = s[n - 1] == 'a' ? 'b' : 'a';
	assert_int_equal(unsub_parse(key1, sizeof(key1) - 1, s, n, &id), -1);
	assert_int_equal(unsub_parse(key1, sizeof(key1) - 1, s, n - 1, &id), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_hmac),
		cmocka_unit_test(test_long_key),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
