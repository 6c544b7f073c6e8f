/*
 * fuzz_authres: one Authentication-Results value as intake reads it
 * (authres_check), against a fixed trusted id and From domain, on any
 * bytes. A pass names dkim or spf; an unreadable value says why; nothing
 * else ever comes back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "intake/auth.h"
#include "check.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1), method[32];
	const char *why = NULL;
	int r;

	if (!v)
		return 0;
	memcpy(v, data, size);
	v[size] = '\0';
	method[0] = '\0';
	r = authres_check(v, "mx.hato.test", "example.co.jp", method, sizeof(method), &why);
	CHECK(r >= -1 && r <= 1);
	if (r == 1)
		CHECK(strcasecmp(method, "dkim") == 0 || strcasecmp(method, "spf") == 0);
	if (r == -1)
		CHECK(why != NULL && *why);
	free(v);
	return 0;
}
