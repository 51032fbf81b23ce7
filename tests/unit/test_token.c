/*
 * Approval tokens (src/base/token.c): key sets from configuration text, a
 * signed token verifies and gives its claims back; a forged one (a byte of
 * its payload or MAC changed, signed by an unknown key, or by another secret
 * under the same key id), an expired one and malformed text are refused with
 * the reason; after a rotation the old key still verifies; the action hash is
 * canonical (key order does not matter, a changed value does).
 */
#include "testlib.h"

#define K1 "k1=00112233445566778899aabbccddeeff"
#define K2 "k2=ffeeddccbbaa99887766554433221100ffee"

static rein_token_keys *keys(const char *text)
{
	rein_token_keys *k = NULL;
	rein_err e = {0};
	assert_int_equal(rein_token_keys_parse(text, &k, &e), REIN_OK);
	return k;
}

static char *mint(const rein_token_keys *k, int64_t exp)
{
	json_t *c = json_pack("{s:s, s:s, s:I, s:s}", "run", "r1", "by", "bob", "exp", (json_int_t)exp,
			      "nonce", "n1");
	char *tok = NULL;
	rein_err e = {0};
	assert_int_equal(rein_token_sign(k, c, &tok, &e), REIN_OK);
	json_decref(c);
	return tok;
}

static void refused(const rein_token_keys *k, const char *tok, int64_t now, const char *why)
{
	json_t *c = NULL;
	rein_err e = {0};
	assert_int_equal(rein_token_verify(k, tok, now, &c, &e), REIN_EINVAL);
	assert_null(c);
	if (strstr(e.msg, why) == NULL)
		fail_msg("'%s' refused with '%s', want '%s'", tok, e.msg, why);
}

static void test_keys_parse(void **state)
{
	(void)state;
	rein_token_keys *k = keys(K1 "," K2);
	assert_string_equal(rein_token_keys_kid(k), "k1");
	rein_token_keys_free(k);
	k = keys(" " K2 "\n" K1 "\n");
	assert_string_equal(rein_token_keys_kid(k), "k2");
	rein_token_keys_free(k);
	const char *bad[] = {"", "k1", "k1=", "k1=0011", "k1=zz112233445566778899aabbccddeeff",
			     K1 "," K1, "bad kid=00112233445566778899aabbccddeeff"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		rein_token_keys *x = NULL;
		rein_err e = {0};
		assert_int_equal(rein_token_keys_parse(bad[i], &x, &e), REIN_EINVAL);
		assert_null(x);
		assert_true(e.msg[0] != '\0');
	}
}

static void test_sign_verify(void **state)
{
	(void)state;
	rein_token_keys *k = keys(K1 "," K2);
	char *tok = mint(k, 2000);
	assert_true(strncmp(tok, "v1.k1.", 6) == 0);
	json_t *c = NULL;
	rein_err e = {0};
	assert_int_equal(rein_token_verify(k, tok, 1000, &c, &e), REIN_OK);
	assert_string_equal(json_string_value(json_object_get(c, "by")), "bob");
	json_decref(c);
	/* expired: exp is the first instant it no longer holds */
	refused(k, tok, 2000, "expired");
	/* forged: each byte of payload and MAC changed in turn */
	size_t n = strlen(tok);
	for (size_t i = 6; i < n; i++) {
		if (tok[i] == '.')
			continue;
		char *f = rein_strdup(tok);
		f[i] = f[i] == 'A' ? 'B' : 'A';
		json_t *fc = NULL;
		rein_err fe = {0};
		assert_int_equal(rein_token_verify(k, f, 1000, &fc, &fe), REIN_EINVAL);
		rein_free(f);
	}
	/* another secret under the same kid */
	rein_token_keys *other = keys("k1=99112233445566778899aabbccddeeff");
	char *forged = mint(other, 2000);
	refused(k, forged, 1000, "bad signature");
	/* a key nobody configured */
	rein_token_keys *k3 = keys("k3=00112233445566778899aabbccddeeff");
	char *t3 = mint(k3, 2000);
	refused(k, t3, 1000, "unknown key id 'k3'");
	const char *junk[] = {"", "v1", "v1..x.y", "v2.k1.a.b", "v1.k1.a", "v1.k1.a.b.c", "v1.k1.!!.??"};
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
		json_t *jc = NULL;
		rein_err je = {0};
		assert_int_equal(rein_token_verify(k, junk[i], 1000, &jc, &je), REIN_EINVAL);
	}
	/* rotation: k2 signs now, k1's tokens still verify until they expire */
	rein_token_keys *rot = keys(K2 "," K1);
	c = NULL;
	assert_int_equal(rein_token_verify(rot, tok, 1000, &c, &e), REIN_OK);
	json_decref(c);
	char *t2 = mint(rot, 2000);
	assert_true(strncmp(t2, "v1.k2.", 6) == 0);
	refused(k3, t2, 1000, "unknown key id 'k2'");
	rein_free(t2);
	rein_free(t3);
	rein_free(forged);
	rein_free(tok);
	rein_token_keys_free(rot);
	rein_token_keys_free(k3);
	rein_token_keys_free(other);
	rein_token_keys_free(k);
}

static void test_action_hash(void **state)
{
	(void)state;
	char a[65], b[65], c[65];
	json_t *x = json_pack("{s:i, s:s}", "amount", 30, "order", "A1");
	json_t *y = json_pack("{s:s, s:i}", "order", "A1", "amount", 30);
	json_t *z = json_pack("{s:s, s:i}", "order", "A1", "amount", 20);
	assert_int_equal(rein_action_hash("refund", x, a), REIN_OK);
	assert_int_equal(rein_action_hash("refund", y, b), REIN_OK);
	assert_int_equal(rein_action_hash("refund", z, c), REIN_OK);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(rein_action_hash("refund2", x, c), REIN_OK);
	assert_string_not_equal(a, c);
	json_decref(x);
	json_decref(y);
	json_decref(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_parse),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_action_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
