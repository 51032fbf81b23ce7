/*
 * The one allocation wrapper, fault injection points, growable buffers and
 * whole-file reads. Tests arm a fault to make the Nth allocation or write fail
 * and check the caller turns it into a clean error. The counters are per
 * thread: arming affects the calling thread only.
 */
#include "base.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

static _Thread_local long fault_left[REIN_FAULT_KINDS]; /* per thread */
static _Thread_local long fault_seen[REIN_FAULT_KINDS];
static _Thread_local long fault_run[REIN_FAULT_KINDS]; /* checks left to fail from the nth */

void rein_fault_arm(int kind, long n) { rein_fault_arm_run(kind, n, 1); }

void rein_fault_arm_run(int kind, long n, long count)
{
	assert(kind >= 0 && kind < REIN_FAULT_KINDS && count >= 1);
	fault_left[kind] = n;
	fault_run[kind] = count;
	fault_seen[kind] = 0;
}

bool rein_fault_hit(int kind)
{
	fault_seen[kind]++;
	if (fault_left[kind] <= 0)
		return false;
	if (--fault_left[kind] > 0)
		return false;
	if (--fault_run[kind] > 0)
		fault_left[kind] = 1; /* the next check fails too */
	return true;
}

long rein_fault_count(int kind) { return fault_seen[kind]; }

void *rein_malloc(size_t n)
{
	if (rein_fault_hit(REIN_FAULT_ALLOC))
		return NULL;
	return malloc(n ? n : 1);
}

void *rein_calloc(size_t nmemb, size_t size)
{
	if (rein_fault_hit(REIN_FAULT_ALLOC))
		return NULL;
	return calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *rein_realloc(void *p, size_t n)
{
	if (rein_fault_hit(REIN_FAULT_ALLOC))
		return NULL;
	return realloc(p, n ? n : 1);
}

void rein_free(void *p) { free(p); }

char *rein_strndup(const char *s, size_t n)
{
	char *d = rein_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *rein_strdup(const char *s) { return rein_strndup(s, strlen(s)); }

char *rein_sprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *s = rein_malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/*
 * jansson does not check every allocation while encoding: under memory
 * pressure json_dumps can return text with a piece missing. rein_json_dump
 * watches this flag and refuses such output.
 */
_Thread_local bool rein_json_alloc_failed;

static void *json_alloc(size_t n)
{
	void *p = rein_malloc(n);
	if (p == NULL)
		rein_json_alloc_failed = true;
	return p;
}

void rein_init(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	json_set_alloc_funcs(json_alloc, rein_free);
	/* no memory statistics: they take a global mutex on every SQLite
	 * allocation (refused, harmlessly, if the program started SQLite first) */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	sqlite3_initialize();
}

static int buf_reserve(rein_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return REIN_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = rein_realloc(b->p, cap);
	if (p == NULL)
		return REIN_ENOMEM;
	b->p = p;
	b->cap = cap;
	return REIN_OK;
}

int rein_buf_append(rein_buf *b, const void *data, size_t n)
{
	if (buf_reserve(b, n) != REIN_OK)
		return REIN_ENOMEM;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return REIN_OK;
}

int rein_buf_puts(rein_buf *b, const char *s) { return rein_buf_append(b, s, strlen(s)); }

int rein_buf_printf(rein_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return REIN_EINVAL;
	if (buf_reserve(b, (size_t)n) != REIN_OK)
		return REIN_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return REIN_OK;
}

void rein_buf_free(rein_buf *b)
{
	if (b) {
		rein_free(b->p);
		b->p = NULL;
		b->len = b->cap = 0;
	}
}

int rein_file_read(const char *path, char **out, size_t *len, rein_err *err)
{
	int rc = REIN_OK;
	rein_buf b = {0};
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		rc = rein_err_set(err, errno == ENOENT ? REIN_ENOTFOUND : REIN_EIO,
				  "%s: %s", path, strerror(errno));
		goto out;
	}
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if ((rc = rein_buf_append(&b, chunk, n)) != REIN_OK) {
			rein_err_set(err, rc, "%s: out of memory", path);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = rein_err_set(err, REIN_EIO, "%s: read error", path);
		goto out;
	}
	if (b.p == NULL && (rc = rein_buf_append(&b, "", 0)) != REIN_OK)
		goto out;
	*out = b.p;
	if (len)
		*len = b.len;
	b.p = NULL;
out:
	if (f)
		fclose(f);
	rein_buf_free(&b);
	return rc;
}

int rein_file_read_within(const char *dir, const char *rel, char **out, size_t *len,
			  rein_err *err)
{
	assert(dir != NULL && rel != NULL && out != NULL);
	int rc = REIN_OK;
	char *full = NULL, *real_dir = NULL, *real_file = NULL;
	if ((full = rein_sprintf("%s/%s", dir, rel)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	/* realpath allocates with malloc: copied into rein_ memory below */
	char *rd = realpath(dir, NULL), *rf = rd ? realpath(full, NULL) : NULL;
	if (rd == NULL || rf == NULL) {
		int e = errno;
		free(rd);
		rc = rein_err_set(err, e == ENOENT ? REIN_ENOTFOUND : REIN_EIO, "%s: %s", full,
				  strerror(e));
		goto out;
	}
	real_dir = rein_strdup(rd);
	real_file = rein_strdup(rf);
	free(rd);
	free(rf);
	if (real_dir == NULL || real_file == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	size_t dl = strlen(real_dir);
	bool inside = strncmp(real_file, real_dir, dl) == 0 &&
		      (real_file[dl] == '/' || (dl == 1 && real_dir[0] == '/'));
	if (!inside) {
		rc = rein_err_set(err, REIN_EINVAL, "resolves to %s, outside %s", real_file, dir);
		goto out;
	}
	rc = rein_file_read(real_file, out, len, err);
out:
	rein_free(full);
	rein_free(real_dir);
	rein_free(real_file);
	return rc;
}

char *rein_expand_env(const char *tmpl)
{
	rein_buf b = {0};
	const char *p = tmpl;
	while (*p) {
		const char *open = strstr(p, "${env."), *close = open ? strchr(open, '}') : NULL;
		if (close == NULL) {
			if (rein_buf_puts(&b, p) != REIN_OK)
				goto fail;
			break;
		}
		if (rein_buf_append(&b, p, (size_t)(open - p)) != REIN_OK)
			goto fail;
		char name[160], *dflt;
		snprintf(name, sizeof name, "%.*s", (int)(close - open - 6), open + 6);
		if ((dflt = strstr(name, ":-")) != NULL) {
			*dflt = '\0';
			dflt += 2;
		}
		const char *v = getenv(name);
		if (rein_buf_puts(&b, v && *v ? v : dflt ? dflt : "") != REIN_OK)
			goto fail;
		p = close + 1;
	}
	if (b.p == NULL && rein_buf_puts(&b, "") != REIN_OK)
		goto fail;
	return b.p;
fail:
	rein_buf_free(&b);
	return NULL;
}
