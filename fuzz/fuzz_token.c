/*
 * libFuzzer target for the approval token parser (src/base/token.c): the
 * input bytes, as text, are verified against a fixed key set and peeked; a
 * token the fuzzer did not sign never verifies, and nothing may crash, read
 * out of bounds or leak. The input is also parsed as a key set. A token
 * signed here from the input's claims (when they are an object) must verify.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static rein_token_keys *k;
	rein_err e = {0};
	if (k == NULL && rein_token_keys_parse("f1=00112233445566778899aabbccddeeff", &k, &e) != REIN_OK)
		abort();
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	json_t *c = NULL;
	if (rein_token_verify(k, text, 0, &c, &e) == REIN_OK) {
		/* only a MAC under f1 verifies: the fuzzer would have forged one */
		char *again = NULL;
		if (rein_token_sign(k, c, &again, &e) != REIN_OK)
			abort();
		rein_free(again);
	}
	json_decref(c);
	c = NULL;
	if (rein_token_peek(text, &c, &e) == REIN_OK) {
		char *tok = NULL;
		json_t *back = NULL;
		json_object_set_new(c, "exp", json_integer(1000));
		if (rein_token_sign(k, c, &tok, &e) != REIN_OK || rein_token_verify(k, tok, 1, &back, &e) != REIN_OK)
			abort();
		rein_free(tok);
		json_decref(back);
	}
	json_decref(c);
	rein_token_keys *k2 = NULL;
	if (rein_token_keys_parse(text, &k2, &e) == REIN_OK)
		rein_token_keys_free(k2);
	free(text);
	return 0;
}
