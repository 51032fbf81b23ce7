/*
 * JSON helpers over jansson: canonical dumps and parse errors with positions.
 *
 * The canonical text is what event hashes cover, so it must stay exactly what
 * jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) writes.
 * That call is slow for the small payloads the runner dumps on every event
 * (a hashtable for loop detection, a key array and qsort per object, printf
 * per integer, a callback per token), so rein_json_dump has its own writer for
 * the common cases and hands the rest to jansson: strings that are not valid
 * UTF-8 (jansson fails or writes a partial key), and nesting deeper than
 * MAX_DEPTH (which is also how a cycle ends). tests/unit/test_json.c compares
 * the two.
 *
 * Reals are the one place rein differs from jansson on purpose: jansson writes
 * "%.17g" (0.1 + 0.2 style noise: 24.99 comes out 24.989999999999998), rein
 * writes the shortest of "%.15g", "%.16g", "%.17g" that strtod reads back to
 * the same double, then jansson's touch-ups (a ".0" when the text would read
 * as an integer, no '+' or leading zeros in the exponent). A double whose
 * shortest form has k <= 15 digits comes out with exactly those k digits
 * (%g drops trailing zeros; a subnormal, with fewer bits, starts the search
 * at one digit: 5e-324). JSON_REAL_PRECISION is per dump, so the rare
 * document left to jansson gets the largest precision any of its reals needs:
 * every real still reads back exactly, some with more digits than needed.
 */
#include "base.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern _Thread_local bool rein_json_alloc_failed; /* mem.c */

#define MAX_DEPTH 256
#define STACK_KEYS 8

/* Output buffer: starts on the caller's stack, moves to the heap if it grows. */
typedef struct wbuf {
	char *p;
	size_t len, cap;
	bool heap;
	bool oom;     /* an allocation failed */
	bool punt;    /* leave this document to jansson */
	size_t flags; /* jansson's JSON_* encoding flags */
	int indent;   /* JSON_INDENT(n): n, else 0 */
} wbuf;

/* jansson's dump_indent: a newline and indentation, or a space unless compact. */
static void put_indent(wbuf *w, int depth, bool space);

static bool wb_grow(wbuf *w, size_t extra)
{
	size_t cap = w->cap * 2;
	while (cap < w->len + extra + 1)
		cap *= 2;
	char *p;
	if (w->heap) {
		p = rein_realloc(w->p, cap);
	} else {
		p = rein_malloc(cap);
		if (p)
			memcpy(p, w->p, w->len);
	}
	if (p == NULL) {
		w->oom = true;
		return false;
	}
	w->p = p;
	w->cap = cap;
	w->heap = true;
	return true;
}

static inline bool wb_room(wbuf *w, size_t extra)
{
	return w->len + extra + 1 <= w->cap || wb_grow(w, extra);
}

static inline void wb_put(wbuf *w, const char *s, size_t n)
{
	if (!wb_room(w, n))
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static inline void wb_ch(wbuf *w, char c)
{
	if (!wb_room(w, 1))
		return;
	w->p[w->len++] = c;
}

/* Length of the UTF-8 sequence at s (at most n bytes) under jansson's rules
 * (utf8_check_first / utf8_check_full): no overlong forms, no surrogates,
 * nothing above U+10FFFF. 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char u = s[0];
	size_t count;
	uint32_t v;
	if (u >= 0xC2 && u <= 0xDF) {
		count = 2;
		v = u & 0x1F;
	} else if (u >= 0xE0 && u <= 0xEF) {
		count = 3;
		v = u & 0x0F;
	} else if (u >= 0xF0 && u <= 0xF4) {
		count = 4;
		v = u & 0x07;
	} else {
		return 0;
	}
	if (count > n)
		return 0;
	for (size_t i = 1; i < count; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (count == 3 && v < 0x800) ||
	    (count == 4 && v < 0x10000))
		return 0;
	return count;
}

static void put_string(wbuf *w, const char *str, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str, *end = s + len;
	wb_ch(w, '"');
	while (s < end) {
		const unsigned char *run = s;
		while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
			s++;
		if (s > run)
			wb_put(w, (const char *)run, (size_t)(s - run));
		if (s == end)
			break;
		unsigned char c = *s;
		if (c >= 0x80) {
			size_t n = utf8_len(s, (size_t)(end - s));
			if (n == 0) {
				w->punt = true;
				return;
			}
			wb_put(w, (const char *)s, n);
			s += n;
			continue;
		}
		char esc[6] = {'\\', 0};
		size_t elen = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: /* other control characters: \u00XX, upper-case hex */
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xF];
			elen = 6;
		}
		wb_put(w, esc, elen);
		s++;
	}
	wb_ch(w, '"');
}

static void put_integer(wbuf *w, json_int_t v)
{
	char tmp[24];
	size_t i = sizeof tmp;
	/* unsigned arithmetic: -LLONG_MIN does not fit a long long */
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	wb_put(w, tmp + i, sizeof tmp - i);
}

/* The precision of the shortest "%.*g" text that reads back as d: 15, 16 or
 * 17; from 1 for a subnormal, whose few bits need fewer digits than 15. */
static int real_precision(double d, char *buf, size_t size)
{
	int prec = fabs(d) < DBL_MIN ? 1 : 15;
	for (; prec < 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return prec;
}

/* Writes the shortest text that reads back as d into buf[32]; returns its length. */
static size_t real_text(double d, char buf[32])
{
	int prec = real_precision(d, buf, 32);
	int n = snprintf(buf, 32, "%.*g", prec, d);
	assert(n > 0 && n < 28);
	size_t len = (size_t)n;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == ',') /* a locale's decimal comma */
			buf[i] = '.';
	if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
		buf[len++] = '.';
		buf[len++] = '0';
		buf[len] = '\0';
	}
	char *e = strchr(buf, 'e');
	if (e) { /* "1e+16" -> "1e16", "1e-07" -> "1e-7" */
		char *start = e + 1, *end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, len - (size_t)(end - buf) + 1);
			len -= (size_t)(end - start);
		}
	}
	return len;
}

static void put_real(wbuf *w, const json_t *j)
{
	char buf[32];
	size_t n = real_text(json_real_value(j), buf);
	wb_put(w, buf, n);
}

typedef struct kv {
	const char *key;
	size_t len;
	json_t *value;
} kv;

/* jansson's compare_keys: bytes first, then the shorter key first. */
static int kv_cmp(const void *a, const void *b)
{
	const kv *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->key, y->key, n);
	if (r)
		return r;
	return x->len < y->len ? -1 : x->len > y->len;
}

static void put_value(wbuf *w, const json_t *j, int depth);

static void put_object(wbuf *w, const json_t *j, int depth)
{
	size_t n = json_object_size(j);
	if (n == 0) {
		wb_put(w, "{}", 2);
		return;
	}
	kv stack[STACK_KEYS];
	kv *keys = n <= STACK_KEYS ? stack : rein_malloc(n * sizeof *keys);
	if (keys == NULL) {
		w->oom = true;
		return;
	}
	size_t i = 0;
	for (void *it = json_object_iter((json_t *)j); it && i < n;
	     it = json_object_iter_next((json_t *)j, it), i++) {
		keys[i].key = json_object_iter_key(it);
		keys[i].len = json_object_iter_key_len(it);
		keys[i].value = json_object_iter_value(it);
	}
	n = i;
	if (!(w->flags & JSON_SORT_KEYS)) {
		/* insertion order, as jansson iterates */
	} else if (n <= STACK_KEYS) { /* insertion sort: most objects have a few keys */
		for (size_t a = 1; a < n; a++) {
			kv t = keys[a];
			size_t b = a;
			while (b > 0 && kv_cmp(&keys[b - 1], &t) > 0) {
				keys[b] = keys[b - 1];
				b--;
			}
			keys[b] = t;
		}
	} else {
		qsort(keys, n, sizeof *keys, kv_cmp);
	}
	wb_ch(w, '{');
	put_indent(w, depth + 1, false);
	for (i = 0; i < n && !w->oom && !w->punt; i++) {
		if (i > 0) {
			wb_ch(w, ',');
			put_indent(w, depth + 1, true);
		}
		put_string(w, keys[i].key, keys[i].len);
		wb_ch(w, ':');
		if (!(w->flags & JSON_COMPACT))
			wb_ch(w, ' ');
		put_value(w, keys[i].value, depth + 1);
	}
	put_indent(w, depth, false);
	wb_ch(w, '}');
	if (keys != stack)
		rein_free(keys);
}

static void put_value(wbuf *w, const json_t *j, int depth)
{
	if (w->oom || w->punt)
		return;
	if (depth > MAX_DEPTH) {
		w->punt = true;
		return;
	}
	switch (json_typeof(j)) {
	case JSON_NULL: wb_put(w, "null", 4); break;
	case JSON_TRUE: wb_put(w, "true", 4); break;
	case JSON_FALSE: wb_put(w, "false", 5); break;
	case JSON_INTEGER: put_integer(w, json_integer_value(j)); break;
	case JSON_REAL: put_real(w, j); break;
	case JSON_STRING: put_string(w, json_string_value(j), json_string_length(j)); break;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		wb_ch(w, '[');
		if (n == 0) {
			wb_ch(w, ']');
			break;
		}
		put_indent(w, depth + 1, false);
		for (size_t i = 0; i < n && !w->oom && !w->punt; i++) {
			if (i > 0) {
				wb_ch(w, ',');
				put_indent(w, depth + 1, true);
			}
			put_value(w, json_array_get(j, i), depth + 1);
		}
		put_indent(w, depth, false);
		wb_ch(w, ']');
		break;
	}
	case JSON_OBJECT: put_object(w, j, depth); break;
	default: w->punt = true; break;
	}
}

/* The largest real_precision among the reals of j (15 when there are none). */
static int max_precision(const json_t *j, int depth)
{
	if (depth > 4 * MAX_DEPTH) /* deeper (or a cycle): no walk, full precision */
		return 17;
	char buf[32];
	int p = 15;
	switch (json_typeof(j)) {
	case JSON_REAL: p = real_precision(json_real_value(j), buf, sizeof buf); break;
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_size(j) && p < 17; i++) {
			int q = max_precision(json_array_get(j, i), depth + 1);
			p = q > p ? q : p;
		}
		break;
	case JSON_OBJECT:
		for (void *it = json_object_iter((json_t *)j); it && p < 17;
		     it = json_object_iter_next((json_t *)j, it)) {
			int q = max_precision(json_object_iter_value(it), depth + 1);
			p = q > p ? q : p;
		}
		break;
	default: break;
	}
	return p;
}

static void put_indent(wbuf *w, int depth, bool space)
{
	if (w->indent > 0) {
		size_t n = (size_t)w->indent * (size_t)depth;
		if (!wb_room(w, n + 1))
			return;
		w->p[w->len++] = '\n';
		memset(w->p + w->len, ' ', n);
		w->len += n;
	} else if (space && !(w->flags & JSON_COMPACT)) {
		wb_ch(w, ' ');
	}
}

static char *jansson_dump(const json_t *j, size_t flags)
{
	rein_json_alloc_failed = false;
	char *s = json_dumps(j, (flags & ~(size_t)JSON_REAL_PRECISION(31)) |
				     JSON_REAL_PRECISION(max_precision(j, 0)));
	if (s && rein_json_alloc_failed) { /* possibly truncated: see mem.c */
		rein_free(s);
		s = NULL;
	}
	return s;
}

char *rein_json_dump(const json_t *j)
{
	return rein_json_dump_flags(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

char *rein_json_dump_flags(const json_t *j, size_t flags)
{
	if (j == NULL || (!(flags & JSON_ENCODE_ANY) && !json_is_object(j) && !json_is_array(j)))
		return NULL;
	char stackbuf[512];
	wbuf w = {.p = stackbuf, .cap = sizeof stackbuf, .flags = flags,
		  .indent = (int)(flags & JSON_MAX_INDENT)};
	/* rarely used escapes: left to jansson */
	w.punt = (flags & (JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH | JSON_EMBED)) != 0;
	put_value(&w, j, 0);
	char *out = NULL;
	if (w.punt) {
		out = jansson_dump(j, flags);
	} else if (!w.oom) {
		if (w.heap) {
			w.p[w.len] = '\0';
			out = w.p;
			w.p = NULL;
		} else {
			out = rein_malloc(w.len + 1);
			if (out) {
				memcpy(out, w.p, w.len);
				out[w.len] = '\0';
			}
		}
	}
	if (w.heap)
		rein_free(w.p);
	return out;
}

/* jansson's words for the errors that name its internals, in a reader's */
static const char *parse_words(const char *text)
{
	if (strstr(text, "maximum parsing depth"))
		return "nested too deeply (more than 2048 levels of arrays and objects)";
	if (strstr(text, "JSON_ALLOW_NUL"))
		return "a \\u0000 (NUL) character is not accepted here";
	return text;
}

json_t *rein_json_parse(const char *text, size_t len, rein_err *err)
{
	json_error_t je;
	json_t *j = json_loadb(text, len,
			       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (j == NULL)
		rein_err_set(err, REIN_EINVAL, "line %d col %d: %s", je.line, je.column,
			     parse_words(je.text));
	return j;
}
