/*
 * URI reference resolution (RFC 3986 §5), fragment handling and JSON Pointer
 * lookup for $id and $ref. Nothing here touches the network: URIs are only
 * names that the compiler matches against resources it already holds.
 */
#include "schema_int.h"

#include <string.h>

typedef struct uri_parts {
	const char *scheme, *auth, *path, *query, *frag;
	size_t nscheme, nauth, npath, nquery, nfrag;
	bool has_auth, has_query, has_frag;
} uri_parts;

static bool is_scheme_char(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

static void uri_parse(const char *u, uri_parts *p)
{
	memset(p, 0, sizeof *p);
	const char *s = u;
	size_t i = 0;
	while (s[i] && is_scheme_char(s[i], i == 0))
		i++;
	if (i > 0 && s[i] == ':') {
		p->scheme = s;
		p->nscheme = i;
		s += i + 1;
	}
	if (s[0] == '/' && s[1] == '/') {
		s += 2;
		size_t n = strcspn(s, "/?#");
		p->has_auth = true;
		p->auth = s;
		p->nauth = n;
		s += n;
	}
	size_t n = strcspn(s, "?#");
	p->path = s;
	p->npath = n;
	s += n;
	if (*s == '?') {
		s++;
		n = strcspn(s, "#");
		p->has_query = true;
		p->query = s;
		p->nquery = n;
		s += n;
	}
	if (*s == '#') {
		s++;
		p->has_frag = true;
		p->frag = s;
		p->nfrag = strlen(s);
	}
}

/* RFC 3986 §5.2.4, writing into out (at least n+1 bytes); returns the length. */
static size_t remove_dots(const char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	while (i < n) {
		const char *r = in + i;
		size_t left = n - i;
		if (left >= 3 && memcmp(r, "../", 3) == 0) {
			i += 3;
		} else if (left >= 2 && memcmp(r, "./", 2) == 0) {
			i += 2;
		} else if (left >= 3 && memcmp(r, "/./", 3) == 0) {
			i += 2;
		} else if (left == 2 && memcmp(r, "/.", 2) == 0) {
			out[o++] = '/';
			i += 2;
		} else if (left >= 4 && memcmp(r, "/../", 4) == 0) {
			i += 3;
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else if (left == 3 && memcmp(r, "/..", 3) == 0) {
			i += 3;
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			out[o++] = '/';
		} else if ((left == 1 && r[0] == '.') || (left == 2 && memcmp(r, "..", 2) == 0)) {
			i += left;
		} else {
			size_t j = 1;
			while (j < left && r[j] != '/')
				j++;
			if (r[0] != '/') {
				j = 0;
				while (j < left && r[j] != '/')
					j++;
			}
			memcpy(out + o, r, j);
			o += j;
			i += j;
		}
	}
	out[o] = '\0';
	return o;
}

static int put_path(rein_buf *b, const char *path, size_t n)
{
	char *tmp = rein_malloc(n + 1);
	if (tmp == NULL)
		return REIN_ENOMEM;
	size_t m = remove_dots(path, n, tmp);
	int rc = rein_buf_append(b, tmp, m);
	rein_free(tmp);
	return rc;
}

char *schema_uri_resolve(const char *base, const char *ref)
{
	uri_parts B, R;
	uri_parse(base, &B);
	uri_parse(ref, &R);
	rein_buf b = {0};
	int rc = REIN_OK;
	char *merged = NULL;

	if (R.scheme) {
		rc |= rein_buf_append(&b, R.scheme, R.nscheme + 1);
		if (R.has_auth) {
			rc |= rein_buf_puts(&b, "//");
			rc |= rein_buf_append(&b, R.auth, R.nauth);
		}
		rc |= put_path(&b, R.path, R.npath);
		if (R.has_query) {
			rc |= rein_buf_puts(&b, "?");
			rc |= rein_buf_append(&b, R.query, R.nquery);
		}
	} else {
		if (B.scheme)
			rc |= rein_buf_append(&b, B.scheme, B.nscheme + 1);
		if (R.has_auth) {
			rc |= rein_buf_puts(&b, "//");
			rc |= rein_buf_append(&b, R.auth, R.nauth);
			rc |= put_path(&b, R.path, R.npath);
			if (R.has_query) {
				rc |= rein_buf_puts(&b, "?");
				rc |= rein_buf_append(&b, R.query, R.nquery);
			}
		} else {
			if (B.has_auth) {
				rc |= rein_buf_puts(&b, "//");
				rc |= rein_buf_append(&b, B.auth, B.nauth);
			}
			if (R.npath == 0) {
				rc |= rein_buf_append(&b, B.path, B.npath);
				if (R.has_query) {
					rc |= rein_buf_puts(&b, "?");
					rc |= rein_buf_append(&b, R.query, R.nquery);
				} else if (B.has_query) {
					rc |= rein_buf_puts(&b, "?");
					rc |= rein_buf_append(&b, B.query, B.nquery);
				}
			} else {
				if (R.path[0] == '/') {
					rc |= put_path(&b, R.path, R.npath);
				} else {
					/* merge: base path up to its last '/', then ref path */
					size_t keep = B.npath;
					while (keep > 0 && B.path[keep - 1] != '/')
						keep--;
					if (B.has_auth && B.npath == 0)
						merged = rein_sprintf("/%.*s", (int)R.npath, R.path);
					else
						merged = rein_sprintf("%.*s%.*s", (int)keep, B.path,
								      (int)R.npath, R.path);
					if (merged == NULL)
						rc = REIN_ENOMEM;
					else if (B.path == NULL || (keep == 0 && !B.has_auth &&
								     merged[0] != '/'))
						rc |= rein_buf_puts(&b, merged); /* e.g. urn: paths */
					else
						rc |= put_path(&b, merged, strlen(merged));
				}
				if (R.has_query) {
					rc |= rein_buf_puts(&b, "?");
					rc |= rein_buf_append(&b, R.query, R.nquery);
				}
			}
		}
	}
	if (R.has_frag) {
		rc |= rein_buf_puts(&b, "#");
		rc |= rein_buf_append(&b, R.frag, R.nfrag);
	}
	if (rc == REIN_OK && b.p == NULL)
		rc = rein_buf_append(&b, "", 0);
	rein_free(merged);
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

char *schema_uri_split(const char *uri, const char **frag)
{
	const char *h = strchr(uri, '#');
	if (h == NULL) {
		*frag = uri + strlen(uri);
		return rein_strdup(uri);
	}
	*frag = h + 1;
	return rein_strndup(uri, (size_t)(h - uri));
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

char *schema_pct_decode(const char *s, size_t n, size_t *outlen)
{
	char *d = rein_malloc(n + 1);
	if (d == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int a = i + 1 < n ? hexval(s[i + 1]) : -1;
			int c = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (a < 0 || c < 0) {
				d[o++] = s[i]; /* not an escape: keep the '%' literally */
				continue;
			}
			d[o++] = (char)(a * 16 + c);
			i += 2;
		} else {
			d[o++] = s[i];
		}
	}
	d[o] = '\0';
	if (outlen)
		*outlen = o;
	return d;
}

const json_t *schema_pointer_get(const json_t *root, const char *ptr, size_t n)
{
	const json_t *cur = root;
	size_t i = 0;
	if (n == 0)
		return root;
	if (ptr[0] != '/')
		return NULL;
	char tok[512];
	while (i < n && cur) {
		i++; /* the '/' */
		size_t t = 0;
		while (i < n && ptr[i] != '/') {
			char c = ptr[i++];
			if (c == '~' && i < n && (ptr[i] == '0' || ptr[i] == '1'))
				c = ptr[i++] == '0' ? '~' : '/';
			if (t + 1 >= sizeof tok)
				return NULL;
			tok[t++] = c;
		}
		tok[t] = '\0';
		if (json_is_object(cur)) {
			cur = json_object_getn(cur, tok, t);
		} else if (json_is_array(cur)) {
			if (t == 0 || (t > 1 && tok[0] == '0'))
				return NULL;
			size_t idx = 0;
			for (size_t k = 0; k < t; k++) {
				if (tok[k] < '0' || tok[k] > '9' || idx > 100000000)
					return NULL;
				idx = idx * 10 + (size_t)(tok[k] - '0');
			}
			cur = json_array_get(cur, idx);
		} else {
			return NULL;
		}
	}
	return cur;
}

char *schema_path_render(const sc_path *p)
{
	/* collect segments root-first */
	size_t depth = 0;
	for (const sc_path *q = p; q; q = q->up)
		depth++;
	const sc_path **seg = rein_malloc((depth ? depth : 1) * sizeof *seg);
	if (seg == NULL)
		return NULL;
	size_t i = depth;
	for (const sc_path *q = p; q; q = q->up)
		seg[--i] = q;
	rein_buf b = {0};
	int rc = rein_buf_append(&b, "", 0);
	for (i = 0; i < depth && rc == REIN_OK; i++) {
		rc = rein_buf_puts(&b, "/");
		if (seg[i]->key == NULL) {
			rc |= rein_buf_printf(&b, "%zu", seg[i]->idx);
			continue;
		}
		for (size_t k = 0; k < seg[i]->klen && rc == REIN_OK; k++) {
			char c = seg[i]->key[k];
			if (c == '~')
				rc = rein_buf_puts(&b, "~0");
			else if (c == '/')
				rc = rein_buf_puts(&b, "~1");
			else
				rc = rein_buf_append(&b, &c, 1);
		}
	}
	rein_free(seg);
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}
