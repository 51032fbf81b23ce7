/*
 * The keyring: one AES-256 key per tenant, for the protected payloads the
 * runner seals (base/seal.c), kept in files outside the database, one per
 * tenant: DIR/TENANT.key holding "KID HEXKEY\n", mode 0600 in a 0700
 * directory. Outside the database, because crypto-shredding must really
 * destroy the key: a row deleted in SQLite lingers in free pages and in the
 * WAL, and in every backup and replica of the database, while the key file is
 * overwritten, fsynced and unlinked, and a backup of the database alone never
 * holds a key. The key id (random, recorded with each sealed box) tells a box
 * sealed under a shredded key from one sealed under the tenant's new key.
 */
#include "store.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct kentry {
	char tenant[64];
	char kid[REIN_KID_LEN + 1];
	uint8_t key[REIN_KEY_LEN];
} kentry;

struct rein_keyring {
	char *dir;
	kentry *v;
	size_t n;
};

int rein_keyring_open(const char *dir, rein_keyring **out, rein_err *err)
{
	rein_keyring *k = rein_calloc(1, sizeof *k);
	if (k == NULL || (k->dir = rein_strdup(dir)) == NULL) {
		rein_free(k);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	*out = k;
	return REIN_OK;
}

void rein_keyring_close(rein_keyring *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++)
		memset(k->v[i].key, 0, REIN_KEY_LEN);
	rein_free(k->v);
	rein_free(k->dir);
	rein_free(k);
}

const char *rein_keyring_dir(const rein_keyring *k) { return k->dir; }

bool rein_tenant_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 63 || t[0] == '.' || t[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || t[i] == '.' || t[i] == '_' || t[i] == '-'))
			return false;
	return true;
}

static int key_path(const rein_keyring *k, const char *tenant, const char *suffix, char *p,
		    size_t n, rein_err *err)
{
	if (!rein_tenant_valid(tenant))
		return rein_err_set(err, REIN_EINVAL, "bad tenant name '%s' (1 to 63 of A-Z a-z 0-9 "
				    ". _ -)", tenant);
	if ((size_t)snprintf(p, n, "%s/%s.key%s", k->dir, tenant, suffix) >= n)
		return rein_err_set(err, REIN_EINVAL, "key path too long");
	return REIN_OK;
}

static kentry *cached(rein_keyring *k, const char *tenant)
{
	for (size_t i = 0; i < k->n; i++)
		if (strcmp(k->v[i].tenant, tenant) == 0)
			return &k->v[i];
	return NULL;
}

/* Reads the tenant's key file into e: REIN_ENOTFOUND when there is none. */
static int key_read(rein_keyring *k, const char *tenant, kentry *e, rein_err *err)
{
	char path[4096], *text = NULL;
	size_t len = 0;
	int rc = key_path(k, tenant, "", path, sizeof path, err);
	if (rc != REIN_OK)
		return rc;
	rein_err e2 = {0};
	if ((rc = rein_file_read(path, &text, &len, &e2)) != REIN_OK) {
		rc = rc == REIN_ENOTFOUND || access(path, F_OK) != 0
			     ? REIN_ENOTFOUND
			     : rein_err_set(err, rc, "cannot read key %s: %s", path, e2.msg);
		goto out;
	}
	char hex[2 * REIN_KEY_LEN + 1];
	if (len != REIN_KID_LEN + 1 + 2 * REIN_KEY_LEN + 1 || text[REIN_KID_LEN] != ' ') {
		rc = rein_err_set(err, REIN_ECORRUPT, "key file %s is malformed", path);
		goto out;
	}
	memcpy(e->kid, text, REIN_KID_LEN);
	e->kid[REIN_KID_LEN] = '\0';
	memcpy(hex, text + REIN_KID_LEN + 1, 2 * REIN_KEY_LEN);
	hex[2 * REIN_KEY_LEN] = '\0';
	if (rein_unhex(hex, e->key, REIN_KEY_LEN) != REIN_OK) {
		rc = rein_err_set(err, REIN_ECORRUPT, "key file %s is malformed", path);
		goto out;
	}
	memset(hex, 0, sizeof hex);
	snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
out:
	if (text) {
		memset(text, 0, len);
		rein_free(text);
	}
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return REIN_EIO;
		p += w;
		n -= (size_t)w;
	}
	return REIN_OK;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Makes a new key for tenant, written atomically (a concurrent maker wins
 * once: link() refuses to replace, and the loser reads the winner's key). */
static int key_create(rein_keyring *k, const char *tenant, kentry *e, rein_err *err)
{
	char path[4096], tmp[4096], line[REIN_KID_LEN + 2 * REIN_KEY_LEN + 3];
	uint8_t kid[REIN_KID_LEN / 2];
	int rc = REIN_OK, fd = -1;
	if ((rc = key_path(k, tenant, "", path, sizeof path, err)) != REIN_OK ||
	    (rc = key_path(k, tenant, ".tmp", tmp, sizeof tmp, err)) != REIN_OK)
		return rc;
	if (mkdir(k->dir, 0700) != 0 && errno != EEXIST)
		return rein_err_set(err, REIN_EIO, "cannot create the key directory %s: %s", k->dir,
				    strerror(errno));
	if (rein_random_bytes(kid, sizeof kid) != REIN_OK ||
	    rein_random_bytes(e->key, REIN_KEY_LEN) != REIN_OK)
		return rein_err_set(err, REIN_EIO, "no random bytes for a key");
	rein_hex(kid, sizeof kid, e->kid);
	rein_hex(e->key, REIN_KEY_LEN, line + REIN_KID_LEN + 1);
	memcpy(line, e->kid, REIN_KID_LEN);
	line[REIN_KID_LEN] = ' ';
	line[REIN_KID_LEN + 1 + 2 * REIN_KEY_LEN] = '\n';
	line[REIN_KID_LEN + 2 + 2 * REIN_KEY_LEN] = '\0';
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
	    write_all(fd, line, strlen(line)) != REIN_OK || fsync(fd) != 0) {
		rc = rein_err_set(err, REIN_EIO, "cannot write key %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (link(tmp, path) != 0) {
		if (errno != EEXIST) {
			rc = rein_err_set(err, REIN_EIO, "cannot write key %s: %s", path,
					  strerror(errno));
			goto out;
		}
		rc = key_read(k, tenant, e, err); /* another process made it first */
		goto out;
	}
	snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
	sync_dir(k->dir);
out:
	memset(line, 0, sizeof line);
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return rc;
}

static int remember(rein_keyring *k, const kentry *e)
{
	kentry *v = rein_realloc(k->v, (k->n + 1) * sizeof *v);
	if (v == NULL)
		return REIN_ENOMEM;
	k->v = v;
	v[k->n++] = *e;
	return REIN_OK;
}

int rein_keyring_current(rein_keyring *k, const char *tenant, bool create,
			 char kid[REIN_KID_LEN + 1], uint8_t key[REIN_KEY_LEN], rein_err *err)
{
	assert(k != NULL && tenant != NULL);
	kentry *c = cached(k, tenant), e = {0};
	int rc = REIN_OK;
	if (c == NULL) {
		rc = key_read(k, tenant, &e, err);
		if (rc == REIN_ENOTFOUND && create)
			rc = key_create(k, tenant, &e, err);
		else if (rc == REIN_ENOTFOUND)
			rc = rein_err_set(err, rc, "tenant %s has no key", tenant);
		if (rc != REIN_OK)
			goto out;
		if (remember(k, &e) != REIN_OK) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		c = &k->v[k->n - 1];
	}
	memcpy(kid, c->kid, REIN_KID_LEN + 1);
	memcpy(key, c->key, REIN_KEY_LEN);
out:
	memset(&e, 0, sizeof e);
	return rc;
}

int rein_keyring_get(rein_keyring *k, const char *tenant, const char *kid,
		     uint8_t key[REIN_KEY_LEN], rein_err *err)
{
	char cur[REIN_KID_LEN + 1];
	int rc = rein_keyring_current(k, tenant, false, cur, key, NULL);
	if (rc == REIN_OK && strcmp(cur, kid) != 0)
		rc = REIN_ENOTFOUND;
	if (rc == REIN_ENOTFOUND) {
		memset(key, 0, REIN_KEY_LEN);
		return rein_err_set(err, rc, "key %s of tenant %s is gone (shredded)", kid, tenant);
	}
	if (rc != REIN_OK)
		return rein_err_set(err, rc, "cannot read the key of tenant %s", tenant);
	return REIN_OK;
}

int rein_keyring_shred(rein_keyring *k, const char *tenant, bool *existed, rein_err *err)
{
	char path[4096];
	int rc = key_path(k, tenant, "", path, sizeof path, err), fd = -1;
	if (rc != REIN_OK)
		return rc;
	kentry *c = cached(k, tenant);
	if (c) { /* forget it here too */
		memset(c, 0, sizeof *c);
		*c = k->v[--k->n];
	}
	*existed = false;
	struct stat sb;
	if (stat(path, &sb) != 0) {
		if (errno != ENOENT)
			rc = rein_err_set(err, REIN_EIO, "cannot read key %s: %s", path,
					  strerror(errno));
		goto out;
	}
	/* overwrite in place, then unlink: the bytes do not outlive the name */
	char zeros[256] = {0};
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 ||
	    write_all(fd, zeros, (size_t)sb.st_size < sizeof zeros ? (size_t)sb.st_size
								  : sizeof zeros) != REIN_OK ||
	    fsync(fd) != 0 || unlink(path) != 0) {
		rc = rein_err_set(err, REIN_EIO, "cannot shred key %s: %s", path, strerror(errno));
		goto out;
	}
	sync_dir(k->dir);
	*existed = true;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}
