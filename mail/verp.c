/*
 * verp: MAC'd delivery names (see verp.h). Pure; the MAC is checked in
 * constant time.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "mail/verp.h"

/*
 * The HMAC keyed once: HMAC() looks the algorithm up in the provider
 * tables and hashes the key on every call, which cost more than the rest
 * of composing a message. Re-initialising a keyed context with no key
 * starts again from its stored key states. One process uses one secret;
 * a different key replaces it.
 */
static pthread_mutex_t keyed_mu = PTHREAD_MUTEX_INITIALIZER;
static EVP_MAC_CTX *keyed;
static unsigned char keyed_key[256];
static size_t keyed_len;

static bool
rekey(const unsigned char *key, size_t keylen)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
		OSSL_PARAM_construct_end()
	};
	EVP_MAC *m;

	if (keyed && keyed_len == keylen && CRYPTO_memcmp(keyed_key, key, keylen) == 0)
		return true;
	EVP_MAC_CTX_free(keyed);
	keyed = NULL;
	if (keylen > sizeof(keyed_key) || (m = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return false;
	keyed = EVP_MAC_CTX_new(m);
	EVP_MAC_free(m);
	if (keyed && !EVP_MAC_init(keyed, key, keylen, params)) {
		EVP_MAC_CTX_free(keyed);
		keyed = NULL;
	}
	memcpy(keyed_key, key, keylen);
	keyed_len = keylen;
	return keyed != NULL;
}

static void
hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *msg, size_t len,
    unsigned char md[EVP_MAX_MD_SIZE])
{
	size_t outl = 0;
	unsigned mdlen = 0;
	bool ok;

	pthread_mutex_lock(&keyed_mu);
	ok = rekey(key, keylen) && EVP_MAC_init(keyed, NULL, 0, NULL) &&
	    EVP_MAC_update(keyed, msg, len) && EVP_MAC_final(keyed, md, &outl, EVP_MAX_MD_SIZE);
	pthread_mutex_unlock(&keyed_mu);
	if (!ok)
		HMAC(EVP_sha256(), key, (int)keylen, msg, len, md, &mdlen);
}

static void
mac(const unsigned char *key, size_t keylen, char kind, uint64_t id, char out[VERP_MAC_LEN + 1])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char msg[1 + 8], md[EVP_MAX_MD_SIZE];

	msg[0] = (unsigned char)kind;
	for (int i = 0; i < 8; i++)
		msg[1 + i] = (unsigned char)(id >> (56 - 8 * i));
	hmac_sha256(key, keylen, msg, sizeof(msg), md);
	/* 80 bits: 16 base32 characters of 5 bits. */
	for (int i = 0; i < VERP_MAC_LEN; i++) {
		int bit = i * 5, byte = bit / 8, shift = bit % 8;
		unsigned v = ((unsigned)md[byte] << 8 | md[byte + 1]) >> (11 - shift);
		out[i] = b32[v & 31];
	}
	out[VERP_MAC_LEN] = '\0';
}

static int
parse(const unsigned char *key, size_t keylen, char kind, const char *prefix,
    const char *s, size_t len, uint64_t *id)
{
	size_t pl = strlen(prefix), i;
	char want[VERP_MAC_LEN + 1], got[VERP_MAC_LEN + 1];
	uint64_t v = 0;

	if (len <= pl || strncasecmp(s, prefix, pl) != 0)
		return -1;
	for (i = pl; i < len && isdigit((unsigned char)s[i]); i++) {
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (i == pl || i >= len || s[i] != '.' || len - i - 1 != VERP_MAC_LEN)
		return -1;
	for (size_t k = 0; k < VERP_MAC_LEN; k++)
		got[k] = (char)tolower((unsigned char)s[i + 1 + k]);
	got[VERP_MAC_LEN] = '\0';
	mac(key, keylen, kind, v, want);
	if (CRYPTO_memcmp(want, got, VERP_MAC_LEN) != 0)
		return -1;
	*id = v;
	return 0;
}

size_t
verp_local(const unsigned char *key, size_t keylen, uint64_t delivery, char *buf, size_t size)
{
	char m[VERP_MAC_LEN + 1];

	mac(key, keylen, 'b', delivery, m);
	return (size_t)snprintf(buf, size, "bounce+%llu.%s", (unsigned long long)delivery, m);
}

int
verp_parse(const unsigned char *key, size_t keylen, const char *local, size_t len, uint64_t *delivery)
{
	return parse(key, keylen, 'b', "bounce+", local, len, delivery);
}

size_t
unsub_token(const unsigned char *key, size_t keylen, uint64_t delivery, char *buf, size_t size)
{
	char m[VERP_MAC_LEN + 1];

	mac(key, keylen, 'u', delivery, m);
	return (size_t)snprintf(buf, size, "u%llu.%s", (unsigned long long)delivery, m);
}

int
unsub_parse(const unsigned char *key, size_t keylen, const char *token, size_t len, uint64_t *delivery)
{
	return parse(key, keylen, 'u', "u", token, len, delivery);
}
