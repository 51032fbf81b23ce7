/*
 * The redaction detectors (Luhn, mod-97, e-mail, phone, tokens, declared
 * secrets), their false positives (order numbers that fail Luhn, dates,
 * amounts, IBAN-shaped text that fails mod-97), placeholders stable within a
 * redactor and continued after learn, the JSON walk and its inverse, and
 * AES-256-GCM sealing (a wrong key or aad, a flipped byte: REIN_ECORRUPT), and
 * the tenants' keyring (store/keys.c) with its shredding.
 */
#include "testlib.h"

#include <sys/stat.h>

static const unsigned ALL = REIN_REDACT_EMAIL | REIN_REDACT_PHONE | REIN_REDACT_CARD |
			    REIN_REDACT_IBAN | REIN_REDACT_TOKEN | REIN_REDACT_SECRET;

/* The redaction of text by a fresh redactor for classes ("" when nothing matched). */
static char *red(unsigned classes, const char *text)
{
	rein_redactor *r = NULL;
	assert_int_equal(rein_redactor_new(classes, &r), REIN_OK);
	assert_int_equal(rein_redactor_secret(r, "hunter2-pass"), REIN_OK);
	char *out = NULL;
	assert_int_equal(rein_redact_text(r, text, strlen(text), &out, NULL), REIN_OK);
	rein_redactor_free(r);
	return out ? out : rein_strdup("");
}

static void expect(unsigned classes, const char *text, const char *want)
{
	char *got = red(classes, text);
	if (strcmp(got, want) != 0)
		fail_msg("redact(%s): got '%s', want '%s'", text, got, want);
	rein_free(got);
}

static void test_luhn(void **st)
{
	(void)st;
	assert_true(rein_luhn_valid("4111111111111111", 16));
	assert_true(rein_luhn_valid("5500005555555559", 16));
	assert_true(rein_luhn_valid("378282246310005", 15));
	assert_false(rein_luhn_valid("4111111111111112", 16));
	assert_false(rein_luhn_valid("1234567812345678", 16)); /* an order number */
	assert_false(rein_luhn_valid("41111x1111111111", 16));
	assert_false(rein_luhn_valid("4", 1));
}

static void test_iban(void **st)
{
	(void)st;
	assert_true(rein_iban_valid("DE89370400440532013000", 22));
	assert_true(rein_iban_valid("GB82WEST12345698765432", 22));
	assert_true(rein_iban_valid("gb82west12345698765432", 22));
	assert_false(rein_iban_valid("DE89370400440532013001", 22)); /* one digit off */
	assert_false(rein_iban_valid("GB82WEST1234569876543", 21));
	assert_false(rein_iban_valid("DE8937040044", 12));
	assert_false(rein_iban_valid("1E89370400440532013000", 22));
}

static void test_detectors(void **st)
{
	(void)st;
	/* cards: plain, grouped; only when Luhn passes and not inside a longer number */
	expect(ALL, "card 4111111111111111 ok", "card [card:1] ok");
	expect(ALL, "card 4111 1111 1111 1111.", "card [card:1].");
	expect(ALL, "card 4111-1111-1111-1111", "card [card:1]");
	expect(ALL, "order 1234567812345678", "");       /* 16 digits failing Luhn */
	expect(ALL, "order 1234-5678-1234-5678", "");    /* grouped, failing Luhn */
	expect(ALL, "id 41111111111111110000", "");      /* 20 digits: no card in it */
	expect(ALL, "ref A4111111111111111", "");        /* inside a word */
	expect(REIN_REDACT_EMAIL, "card 4111111111111111", ""); /* class not chosen */
	/* e-mail */
	expect(ALL, "mail ann.lee+x@example.co.uk, thanks", "mail [email:1], thanks");
	expect(ALL, "to: bob@example.com.", "to: [email:1].");
	expect(ALL, "not@mail", "");
	expect(ALL, "user@host.c0m", "");
	expect(ALL, "@example.com", "");
	/* IBAN */
	expect(ALL, "pay DE89370400440532013000 now", "pay [iban:1] now");
	expect(ALL, "pay DE89 3704 0044 0532 0130 00 now", "pay [iban:1] now");
	expect(ALL, "pay DE89370400440532013001 now", ""); /* fails mod-97 */
	/* phone */
	expect(ALL, "call +1 415 555 0100 today", "call [phone:1] today");
	expect(ALL, "call (415) 555-0100", "call [phone:1]");
	expect(ALL, "call 415-555-0100", "call [phone:1]");
	expect(ALL, "on 2024-01-15 at 12.30", "");        /* a date, a time */
	expect(ALL, "total 1 000 000", "");                /* an amount */
	expect(ALL, "order 4155550100", "");               /* bare digits: an id */
	/* tokens and keys */
	expect(ALL, "Authorization: Bearer abc.DEF-123_xyz", "Authorization: Bearer [token:1]");
	expect(ALL, "key sk-proj-ABCDEFGHIJKLMNOP1234 end", "key [token:1] end");
	expect(ALL, "AKIAIOSFODNN7EXAMPLE", "[token:1]");
	expect(ALL, "sk-short", "");
	expect(ALL, "task-ABCDEFGHIJKLMNOPQRST", "");      /* sk- inside a word */
	/* declared secrets, exactly */
	expect(ALL, "pw=hunter2-pass;", "pw=[secret:1];");
	expect(ALL & ~REIN_REDACT_SECRET, "pw=hunter2-pass;", "");
	assert_int_equal(rein_redact_class("card"), REIN_REDACT_CARD);
	assert_int_equal(rein_redact_class("iban"), REIN_REDACT_IBAN);
	assert_int_equal(rein_redact_class("cards"), 0);
}

static void test_stable_and_learn(void **st)
{
	(void)st;
	rein_redactor *r = NULL;
	assert_int_equal(rein_redactor_new(ALL, &r), REIN_OK);
	json_t *found = json_object();
	json_t *in = json_pack("{s:s, s:[s, s], s:i}", "a", "a@x.org and b@x.org", "b",
			       "again a@x.org", "4111111111111111", "n", 7);
	json_t *out = NULL;
	assert_int_equal(rein_redact_json(r, in, &out, found), REIN_OK);
	char *text = rein_json_dump(out);
	assert_string_equal(text, "{\"a\":\"[email:1] and [email:2]\",\"b\":[\"again [email:1]\","
				  "\"[card:1]\"],\"n\":7}");
	rein_free(text);
	assert_int_equal(json_object_size(found), 3);
	assert_string_equal(json_string_value(json_object_get(found, "[email:2]")), "b@x.org");
	/* the inverse gives the input back */
	json_t *back = rein_unredact_json(out, found);
	assert_true(json_equal(back, in));
	json_decref(back);
	/* nothing to redact: the same value, no copy */
	json_t *plain = json_pack("{s:s}", "k", "nothing here"), *same = NULL;
	assert_int_equal(rein_redact_json(r, plain, &same, NULL), REIN_OK);
	assert_ptr_equal(plain, same);
	json_decref(same);
	json_decref(plain);
	rein_redactor_free(r);

	/* a resumed run: learn what was sealed, go on numbering after it */
	assert_int_equal(rein_redactor_new(ALL, &r), REIN_OK);
	assert_int_equal(rein_redactor_learn(r, "[email:2]", "b@x.org"), REIN_OK);
	assert_int_equal(rein_redactor_learn(r, "nope", "x"), REIN_EINVAL);
	assert_int_equal(rein_redactor_learn(r, "[nope:1]", "x"), REIN_EINVAL);
	char *s = NULL;
	const char *t = "b@x.org c@x.org";
	assert_int_equal(rein_redact_text(r, t, strlen(t), &s, NULL), REIN_OK);
	assert_string_equal(s, "[email:2] [email:3]");
	rein_free(s);
	rein_redactor_free(r);
	json_decref(out);
	json_decref(in);
	json_decref(found);
}

static void test_seal(void **st)
{
	(void)st;
	uint8_t key[REIN_KEY_LEN], other[REIN_KEY_LEN];
	assert_int_equal(rein_random_bytes(key, sizeof key), REIN_OK);
	assert_int_equal(rein_random_bytes(other, sizeof other), REIN_OK);
	const char *msg = "{\"[card:1]\":\"4111111111111111\"}";
	uint8_t *box = NULL, *box2 = NULL;
	size_t n = 0, n2 = 0;
	assert_int_equal(rein_seal(key, msg, strlen(msg), "run_1", &box, &n), REIN_OK);
	assert_int_equal(n, strlen(msg) + 28);
	assert_null(memmem(box, n, "4111", 4));
	assert_int_equal(rein_seal(key, msg, strlen(msg), "run_1", &box2, &n2), REIN_OK);
	assert_memory_not_equal(box, box2, 12); /* a fresh nonce each time */
	char *pt = NULL;
	size_t m = 0;
	assert_int_equal(rein_unseal(key, box, n, "run_1", &pt, &m), REIN_OK);
	assert_string_equal(pt, msg);
	rein_free(pt);
	assert_int_equal(rein_unseal(other, box, n, "run_1", &pt, &m), REIN_ECORRUPT);
	assert_int_equal(rein_unseal(key, box, n, "run_2", &pt, &m), REIN_ECORRUPT);
	box[20] ^= 1;
	assert_int_equal(rein_unseal(key, box, n, "run_1", &pt, &m), REIN_ECORRUPT);
	assert_int_equal(rein_unseal(key, box, 10, "run_1", &pt, &m), REIN_ECORRUPT);
	rein_free(box);
	rein_free(box2);
}

/* The keyring: a key made on first use, read back by a second handle, refused
 * once shredded (also by the handle that cached it), a new key after. */
static void test_keyring(void **st)
{
	(void)st;
	char dir[] = "/tmp/rein-keys-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[64];
	snprintf(sub, sizeof sub, "%s/keys", dir);
	rein_keyring *k = NULL, *k2 = NULL;
	rein_err e = {0};
	uint8_t key[REIN_KEY_LEN], key2[REIN_KEY_LEN];
	char kid[REIN_KID_LEN + 1], kid2[REIN_KID_LEN + 1];
	assert_int_equal(rein_keyring_open(sub, &k, &e), REIN_OK);
	assert_int_equal(rein_keyring_current(k, "acme", false, kid, key, &e), REIN_ENOTFOUND);
	assert_int_equal(rein_keyring_current(k, "acme", true, kid, key, &e), REIN_OK);
	assert_int_equal(rein_keyring_current(k, "../x", true, kid2, key2, &e), REIN_EINVAL);
	assert_int_equal(rein_keyring_open(sub, &k2, &e), REIN_OK);
	assert_int_equal(rein_keyring_get(k2, "acme", kid, key2, &e), REIN_OK);
	assert_memory_equal(key, key2, REIN_KEY_LEN);
	assert_int_equal(rein_keyring_get(k2, "acme", "0000000000000000", key2, &e), REIN_ENOTFOUND);
	char path[128];
	snprintf(path, sizeof path, "%s/acme.key", sub);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	bool existed = false;
	assert_int_equal(rein_keyring_shred(k, "acme", &existed, &e), REIN_OK);
	assert_true(existed);
	assert_int_not_equal(stat(path, &sb), 0);
	memset(&e, 0, sizeof e);
	assert_int_equal(rein_keyring_get(k, "acme", kid, key2, &e), REIN_ENOTFOUND);
	assert_non_null(strstr(e.msg, "shredded"));
	assert_int_equal(rein_keyring_shred(k, "acme", &existed, &e), REIN_OK);
	assert_false(existed);
	/* a new key, another id: the old id stays gone */
	assert_int_equal(rein_keyring_current(k, "acme", true, kid2, key2, &e), REIN_OK);
	assert_string_not_equal(kid, kid2);
	assert_int_equal(rein_keyring_get(k, "acme", kid, key2, NULL), REIN_ENOTFOUND);
	assert_int_equal(rein_keyring_shred(k, "acme", &existed, &e), REIN_OK);
	rein_keyring_close(k);
	rein_keyring_close(k2);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_luhn),
		cmocka_unit_test(test_iban),
		cmocka_unit_test(test_detectors),
		cmocka_unit_test(test_stable_and_learn),
		cmocka_unit_test(test_seal),
		cmocka_unit_test(test_keyring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
