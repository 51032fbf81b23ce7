/*
 * Approval tokens (base.h): HMAC-SHA256 over "v1.KID.PAYLOAD", the payload
 * base64url (no padding) of the claims' canonical JSON. Key sets come from
 * configuration text; the first key signs, every key verifies.
 */
#include <assert.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base.h"

#define TOKEN_MAX_KEYS 16
#define TOKEN_MAX_LEN 65536

typedef struct token_key {
	char kid[33];
	uint8_t secret[64];
	size_t n;
} token_key;

struct rein_token_keys {
	token_key k[TOKEN_MAX_KEYS];
	size_t n;
};

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of in[0..n) appended to b. */
static int b64_put(rein_buf *b, const uint8_t *in, size_t n)
{
	int rc = REIN_OK;
	for (size_t i = 0; i < n && rc == REIN_OK; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		char q[5] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63], 0};
		q[n - i == 1 ? 2 : n - i == 2 ? 3 : 4] = '\0';
		rc = rein_buf_puts(b, q);
	}
	return rc;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Decodes s[0..n) into *out (caller frees, NUL-terminated, *len); REIN_EINVAL
 * when it is not base64url without padding; REIN_ENOMEM. */
static int b64_get(const char *s, size_t n, uint8_t **out, size_t *len)
{
	if (n % 4 == 1)
		return REIN_EINVAL;
	uint8_t *o = rein_malloc(n * 3 / 4 + 2);
	size_t k = 0;
	if (o == NULL)
		return REIN_ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		size_t m = n - i < 4 ? n - i : 4;
		for (size_t j = 0; j < 4; j++) {
			int x = j < m ? b64_val(s[i + j]) : 0;
			if (x < 0) {
				rein_free(o);
				return REIN_EINVAL;
			}
			v = (v << 6) | (uint32_t)x;
		}
		o[k++] = (uint8_t)(v >> 16);
		if (m > 2)
			o[k++] = (uint8_t)(v >> 8);
		if (m > 3)
			o[k++] = (uint8_t)v;
	}
	o[k] = '\0';
	*out = o;
	*len = k;
	return REIN_OK;
}

static bool kid_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-';
}

int rein_token_keys_parse(const char *text, rein_token_keys **out, rein_err *err)
{
	assert(text != NULL && out != NULL);
	rein_token_keys *ks = rein_calloc(1, sizeof *ks);
	int rc = REIN_OK;
	*out = NULL;
	if (ks == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const char *p = text;
	while (*p) {
		while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		const char *eq = p;
		while (kid_char(*eq))
			eq++;
		size_t kl = (size_t)(eq - p);
		if (*eq != '=' || kl == 0 || kl > 32) {
			rc = rein_err_set(err, REIN_EINVAL, "approval keys: expected KID=HEXSECRET "
					  "(KID: 1-32 of A-Z a-z 0-9 _ -) at '%.20s'", p);
			goto out;
		}
		const char *h = eq + 1, *e = h;
		while ((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'f') || (*e >= 'A' && *e <= 'F'))
			e++;
		size_t hl = (size_t)(e - h);
		if (hl % 2 || hl < 32 || hl > 128 ||
		    !(*e == '\0' || *e == ',' || *e == ' ' || *e == '\n' || *e == '\r' || *e == '\t')) {
			rc = rein_err_set(err, REIN_EINVAL, "approval key '%.*s': the secret must be 32 to "
					  "128 hex digits (16 to 64 bytes)", (int)kl, p);
			goto out;
		}
		if (ks->n == TOKEN_MAX_KEYS) {
			rc = rein_err_set(err, REIN_EINVAL, "approval keys: at most %d keys",
					  TOKEN_MAX_KEYS);
			goto out;
		}
		token_key *k = &ks->k[ks->n];
		memcpy(k->kid, p, kl);
		k->kid[kl] = '\0';
		for (size_t i = 0; i < ks->n; i++)
			if (strcmp(ks->k[i].kid, k->kid) == 0) {
				rc = rein_err_set(err, REIN_EINVAL, "approval key '%s' is given twice", k->kid);
				goto out;
			}
		char hex[129];
		memcpy(hex, h, hl);
		hex[hl] = '\0';
		k->n = hl / 2;
		if (rein_unhex(hex, k->secret, k->n) != REIN_OK) {
			rc = rein_err_set(err, REIN_EINVAL, "approval key '%s': bad hex", k->kid);
			goto out;
		}
		ks->n++;
		p = e;
	}
	if (ks->n == 0) {
		rc = rein_err_set(err, REIN_EINVAL, "approval keys: none given");
		goto out;
	}
	*out = ks;
	ks = NULL;
out:
	rein_token_keys_free(ks);
	return rc;
}

void rein_token_keys_free(rein_token_keys *k)
{
	if (k == NULL)
		return;
	OPENSSL_cleanse(k, sizeof *k);
	rein_free(k);
}

const char *rein_token_keys_kid(const rein_token_keys *k)
{
	assert(k != NULL && k->n > 0);
	return k->k[0].kid;
}

static void mac_of(const token_key *k, const char *msg, size_t n, uint8_t out[REIN_HASH_LEN])
{
	rein_hmac_sha256(k->secret, k->n, msg, n, out);
}

int rein_token_sign(const rein_token_keys *k, const json_t *claims, char **out, rein_err *err)
{
	assert(k != NULL && k->n > 0 && json_is_object(claims) && out != NULL);
	rein_buf b = {0};
	char *js = rein_json_dump(claims);
	uint8_t mac[REIN_HASH_LEN];
	int rc = js ? rein_buf_printf(&b, "v1.%s.", k->k[0].kid) : REIN_ENOMEM;
	if (rc == REIN_OK)
		rc = b64_put(&b, (const uint8_t *)js, strlen(js));
	if (rc == REIN_OK) {
		mac_of(&k->k[0], b.p, b.len, mac);
		rc = rein_buf_puts(&b, ".");
	}
	if (rc == REIN_OK)
		rc = b64_put(&b, mac, sizeof mac);
	rein_free(js);
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	*out = b.p;
	return REIN_OK;
}

int rein_token_verify(const rein_token_keys *k, const char *token, int64_t now_ms,
		      json_t **claims, rein_err *err)
{
	assert(k != NULL && token != NULL && claims != NULL);
	uint8_t *payload = NULL, *mac = NULL;
	size_t plen = 0, mlen = 0;
	json_t *c = NULL;
	int rc = REIN_OK;
	*claims = NULL;
	size_t n = strnlen(token, TOKEN_MAX_LEN + 1);
	const char *d1 = n <= TOKEN_MAX_LEN && strncmp(token, "v1.", 3) == 0 ? strchr(token + 3, '.')
									   : NULL;
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL || d1 - token - 3 > 32 || d1 == token + 3) {
		rc = rein_err_set(err, REIN_EINVAL, "malformed token");
		goto out;
	}
	char kid[33];
	memcpy(kid, token + 3, (size_t)(d1 - token - 3));
	kid[d1 - token - 3] = '\0';
	const token_key *key = NULL;
	for (size_t i = 0; i < k->n && key == NULL; i++)
		if (strcmp(k->k[i].kid, kid) == 0)
			key = &k->k[i];
	if (key == NULL) {
		rc = rein_err_set(err, REIN_EINVAL, "unknown key id '%s'", kid);
		goto out;
	}
	rc = b64_get(d2 + 1, strlen(d2 + 1), &mac, &mlen);
	if (rc == REIN_OK && mlen != REIN_HASH_LEN)
		rc = REIN_EINVAL;
	if (rc != REIN_OK) {
		rc = rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory")
				       : rein_err_set(err, rc, "malformed token");
		goto out;
	}
	uint8_t want[REIN_HASH_LEN];
	mac_of(key, token, (size_t)(d2 - token), want);
	if (CRYPTO_memcmp(want, mac, REIN_HASH_LEN) != 0) {
		rc = rein_err_set(err, REIN_EINVAL, "bad signature");
		goto out;
	}
	if ((rc = b64_get(d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen)) != REIN_OK) {
		rc = rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory")
				       : rein_err_set(err, rc, "malformed token");
		goto out;
	}
	rein_err je = {0};
	c = rein_json_parse((const char *)payload, plen, &je);
	if (c == NULL && je.code == REIN_ENOMEM) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	const json_t *exp = json_object_get(c, "exp");
	if (!json_is_object(c) || !json_is_integer(exp)) {
		rc = rein_err_set(err, REIN_EINVAL, "malformed token (its claims)");
		goto out;
	}
	if (json_integer_value(exp) <= now_ms) {
		rc = rein_err_set(err, REIN_EINVAL, "expired");
		goto out;
	}
	*claims = c;
	c = NULL;
out:
	json_decref(c);
	rein_free(payload);
	rein_free(mac);
	return rc;
}

int rein_action_hash(const char *tool, const json_t *args, char out[65])
{
	assert(tool != NULL && args != NULL && out != NULL);
	char *js = rein_json_dump(args);
	if (js == NULL)
		return REIN_ENOMEM;
	rein_sha256_ctx c;
	uint8_t h[REIN_HASH_LEN];
	rein_sha256_init(&c);
	rein_sha256_update(&c, tool, strlen(tool));
	rein_sha256_update(&c, "\n", 1);
	rein_sha256_update(&c, js, strlen(js));
	rein_sha256_final(&c, h);
	rein_hex(h, sizeof h, out);
	rein_free(js);
	return REIN_OK;
}

int rein_token_peek(const char *token, json_t **claims, rein_err *err)
{
	assert(token != NULL && claims != NULL);
	*claims = NULL;
	size_t n = strnlen(token, TOKEN_MAX_LEN + 1);
	const char *d1 = n <= TOKEN_MAX_LEN && strncmp(token, "v1.", 3) == 0 ? strchr(token + 3, '.')
									   : NULL;
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	uint8_t *payload = NULL;
	size_t plen = 0;
	if (d2 == NULL)
		return rein_err_set(err, REIN_EINVAL, "malformed token");
	int rc = b64_get(d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen);
	if (rc != REIN_OK)
		return rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory")
					 : rein_err_set(err, rc, "malformed token");
	rein_err je = {0};
	json_t *c = rein_json_parse((const char *)payload, plen, &je);
	rein_free(payload);
	if (!json_is_object(c)) {
		json_decref(c);
		return rein_err_set(err, REIN_EINVAL, "malformed token (its claims)");
	}
	*claims = c;
	return REIN_OK;
}
