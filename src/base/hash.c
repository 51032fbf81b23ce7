/* SHA-256 and HMAC-SHA-256 through libcrypto, and hex encoding. */
/* the low-level SHA256_* calls are deprecated in OpenSSL 3 but are the only
 * ones that keep their state on the caller's stack (EVP allocates it) */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "base.h"

#include <assert.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* Fetched once: SHA256() would look the algorithm up on every call. */
static EVP_MD *sha256_md;
static _Thread_local EVP_MD_CTX *sha256_ctx;

void rein_sha256(const void *data, size_t n, uint8_t out[REIN_HASH_LEN])
{
	if (sha256_md == NULL)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256_ctx == NULL)
		sha256_ctx = EVP_MD_CTX_new();
	if (sha256_md == NULL || sha256_ctx == NULL || !EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL) ||
	    !EVP_DigestUpdate(sha256_ctx, data, n) || !EVP_DigestFinal_ex(sha256_ctx, out, NULL))
		SHA256(data, n, out); /* the slow path cannot fail */
}

static_assert(sizeof(rein_sha256_ctx) >= sizeof(SHA256_CTX), "rein_sha256_ctx too small");

void rein_sha256_init(rein_sha256_ctx *c) { SHA256_Init((SHA256_CTX *)(void *)c->opaque); }

void rein_sha256_update(rein_sha256_ctx *c, const void *data, size_t n)
{
	SHA256_Update((SHA256_CTX *)(void *)c->opaque, data, n);
}

void rein_sha256_final(rein_sha256_ctx *c, uint8_t out[REIN_HASH_LEN])
{
	SHA256_Final(out, (SHA256_CTX *)(void *)c->opaque);
}

void rein_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
		      uint8_t out[REIN_HASH_LEN])
{
	unsigned int len = REIN_HASH_LEN;
	HMAC(EVP_sha256(), key, (int)klen, data, n, out, &len);
}

void rein_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int rein_unhex(const char *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(in[2 * i]), lo = hi < 0 ? -1 : hexval(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return REIN_EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return in[2 * n] == '\0' ? REIN_OK : REIN_EINVAL;
}
