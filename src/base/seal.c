/*
 * AES-256-GCM through libcrypto's EVP interface, and random bytes from the
 * OS CSPRNG (RAND_bytes): what protected payloads are sealed with. A sealed
 * box is nonce[12] || ciphertext || tag[16]; a fresh random nonce per box, so
 * one key may seal many boxes (2^32 boxes per key stays far within GCM's
 * random-nonce bound).
 */
#include "base.h"

#include <assert.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

enum { NONCE = 12, TAG = 16 };

int rein_random_bytes(void *out, size_t n)
{
	return n <= (size_t)INT32_MAX && RAND_bytes(out, (int)n) == 1 ? REIN_OK : REIN_EIO;
}

int rein_seal(const uint8_t key[REIN_KEY_LEN], const void *pt, size_t n, const char *aad,
	      uint8_t **out, size_t *outlen)
{
	assert(key != NULL && out != NULL && outlen != NULL);
	int rc = REIN_EIO, len = 0;
	EVP_CIPHER_CTX *c = NULL;
	uint8_t *box = NULL;
	if (n > (size_t)INT32_MAX - NONCE - TAG)
		return REIN_EINVAL;
	if ((box = rein_malloc(n + NONCE + TAG)) == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	if (rein_random_bytes(box, NONCE) != REIN_OK || (c = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, key, box) != 1)
		goto out;
	if (aad && EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (EVP_EncryptUpdate(c, box + NONCE, &len, pt, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(c, box + NONCE + len, &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, box + NONCE + n) != 1)
		goto out;
	*out = box;
	*outlen = n + NONCE + TAG;
	box = NULL;
	rc = REIN_OK;
out:
	EVP_CIPHER_CTX_free(c);
	rein_free(box);
	return rc;
}

int rein_unseal(const uint8_t key[REIN_KEY_LEN], const uint8_t *in, size_t n, const char *aad,
		char **pt, size_t *ptlen)
{
	assert(key != NULL && pt != NULL && ptlen != NULL);
	int rc = REIN_ECORRUPT, len = 0;
	EVP_CIPHER_CTX *c = NULL;
	char *plain = NULL;
	if (n < NONCE + TAG || n > (size_t)INT32_MAX)
		goto out;
	size_t m = n - NONCE - TAG;
	if ((plain = rein_malloc(m + 1)) == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	if ((c = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, key, in) != 1)
		goto out;
	if (aad && EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (EVP_DecryptUpdate(c, (uint8_t *)plain, &len, in + NONCE, (int)m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, (void *)(in + n - TAG)) != 1 ||
	    EVP_DecryptFinal_ex(c, (uint8_t *)plain + len, &len) != 1)
		goto out; /* the tag does not verify: wrong key, aad or bytes */
	plain[m] = '\0';
	*pt = plain;
	*ptlen = m;
	plain = NULL;
	rc = REIN_OK;
out:
	EVP_CIPHER_CTX_free(c);
	rein_free(plain);
	return rc;
}
