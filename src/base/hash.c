/* SHA-256 and HMAC-SHA-256 through libcrypto, and hex encoding. */
#include "base.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

void rein_sha256(const void *data, size_t n, uint8_t out[REIN_HASH_LEN])
{
	SHA256(data, n, out);
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
