/*
 * `pattern` and `patternProperties` use ECMA-262 regular expressions; we run
 * them on POSIX regcomp (REG_EXTENDED) after translating the common ECMA
 * constructs. Matching is byte-wise in the "C" locale (set per call with
 * uselocale, so the process locale does not change results).
 *
 * Translated: \d \w \s \D \W \S (also inside brackets, except the negated
 * ones), \t \n \r \f \v, \xHH, \uXXXX (to UTF-8), escaped punctuation,
 * (?:...) as a plain group, lazy quantifiers (*? +? ?? {n,m}?) as greedy ones
 * (equivalent for a yes/no match), \p{L} / \p{Letter} as "an ASCII letter or
 * any non-ASCII character", \b and \B (glibc extensions, passed through).
 *
 * Limitations: lookahead/lookbehind, named groups, \0, other \p classes and
 * escaped bracket metacharacters inside [...] are rejected at compile time, as
 * are stacked quantifiers ("a**") and repeat counts over 1000 or whose product
 * over the pattern exceeds 100000 (glibc expands {n,m} into copies of the
 * operand, so these would cost unbounded memory). '.' matches one byte, not
 * one code point, and also matches newlines; bracket ranges over non-ASCII
 * characters are byte ranges.
 */
#include "schema_int.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on {n,m}: glibc expands repeats into copies of the operand. */
#define MAX_REPEAT 1000UL
#define MAX_COST 100000UL

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static locale_t enter_c(void)
{
	pthread_once(&c_locale_once, c_locale_init);
	if (c_locale == (locale_t)0)
		return (locale_t)0;
	return uselocale(c_locale);
}

static void leave_c(locale_t old)
{
	if (old != (locale_t)0)
		uselocale(old);
}

static int put_utf8(rein_buf *b, unsigned long cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return rein_buf_append(b, u, n);
}

/* A literal character outside brackets, escaped for ERE when special. */
static int put_lit(rein_buf *b, char c, bool in_bracket)
{
	if (!in_bracket && strchr(".[]()*+?{}|^$\\", c)) {
		char e[2] = {'\\', c};
		return rein_buf_append(b, e, 2);
	}
	return rein_buf_append(b, &c, 1);
}

static int hex_digits(const char *s, int n, unsigned long *out)
{
	unsigned long v = 0;
	for (int i = 0; i < n; i++) {
		char c = s[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + (unsigned long)d;
	}
	*out = v;
	return 0;
}

/* Translates pattern into ERE text in b; on failure returns a reason. */
static const char *translate(const char *p, rein_buf *b)
{
	bool in_br = false;
	size_t br_start = 0;
	unsigned long cost = 1;
	int rc = REIN_OK;
	for (size_t i = 0; p[i] && rc == REIN_OK; i++) {
		char c = p[i];
		if (in_br) {
			if (c == ']' && i > br_start) {
				in_br = false;
				rc = rein_buf_puts(b, "]");
				continue;
			}
			if (c == '[' && p[i + 1] == ':') {
				rc = rein_buf_puts(b, "\\[");
				continue;
			}
			if (c != '\\') {
				rc = rein_buf_append(b, &c, 1);
				continue;
			}
			char e = p[++i];
			switch (e) {
			case '\0': return "trailing backslash";
			case 'd': rc = rein_buf_puts(b, "0-9"); break;
			case 'w': rc = rein_buf_puts(b, "A-Za-z0-9_"); break;
			case 's': rc = rein_buf_puts(b, " \t\n\r\f\v"); break;
			case 't': rc = rein_buf_puts(b, "\t"); break;
			case 'n': rc = rein_buf_puts(b, "\n"); break;
			case 'r': rc = rein_buf_puts(b, "\r"); break;
			case 'f': rc = rein_buf_puts(b, "\f"); break;
			case 'v': rc = rein_buf_puts(b, "\v"); break;
			case 'D': case 'W': case 'S': case 'p': case 'P':
				return "negated class escape inside brackets is not supported";
			case ']': case '\\': case '^': case '[':
				return "escaped bracket metacharacter is not supported";
			case 'x': case 'u': {
				int n = e == 'x' ? 2 : 4;
				unsigned long cp;
				if (strnlen(p + i + 1, (size_t)n) < (size_t)n ||
				    hex_digits(p + i + 1, n, &cp) != 0)
					return "bad hex escape";
				if (cp == 0 || cp >= 0x80)
					return "non-ASCII escape inside brackets is not supported";
				i += (size_t)n;
				char ch = (char)cp;
				rc = rein_buf_append(b, &ch, 1);
				break;
			}
			default: rc = rein_buf_append(b, &e, 1); break;
			}
			continue;
		}
		switch (c) {
		case '[':
			in_br = true;
			rc = rein_buf_puts(b, "[");
			if (p[i + 1] == '^') {
				rc |= rein_buf_puts(b, "^");
				i++;
			}
			br_start = i + 1;
			if (p[i + 1] == ']') { /* ECMA: [] matches nothing, [^] anything */
				return "empty bracket expression is not supported";
			}
			break;
		case '(':
			if (p[i + 1] == '?') {
				if (p[i + 2] == ':') {
					i += 2;
					rc = rein_buf_puts(b, "(");
				} else {
					return "lookaround and named groups are not supported";
				}
			} else {
				rc = rein_buf_puts(b, "(");
			}
			break;
		case '{':
			if (p[i + 1] >= '0' && p[i + 1] <= '9') {
				/* bounded repeat: glibc copies the operand max times */
				unsigned long lo = strtoul(p + i + 1, NULL, 10), hi = lo;
				const char *comma = strchr(p + i, ',');
				const char *close = strchr(p + i, '}');
				if (close == NULL)
					return "unterminated repetition";
				if (comma && comma < close && comma[1] != '}')
					hi = strtoul(comma + 1, NULL, 10);
				if (lo > MAX_REPEAT || hi > MAX_REPEAT)
					return "repetition count too large";
				cost *= (hi ? hi : 1);
				if (cost > MAX_COST)
					return "pattern too complex";
			}
			rc = rein_buf_append(b, &c, 1);
			break;
		case '*': case '+': case '?': case '}':
			rc = rein_buf_append(b, &c, 1);
			if (p[i + 1] == '?')
				i++; /* lazy → greedy */
			if (p[i + 1] == '*' || p[i + 1] == '+' || p[i + 1] == '?' ||
			    (p[i + 1] == '{' && p[i + 2] >= '0' && p[i + 2] <= '9'))
				return "nothing to repeat (quantifier after quantifier)";
			break;
		case '\\': {
			char e = p[++i];
			switch (e) {
			case '\0': return "trailing backslash";
			case 'd': rc = rein_buf_puts(b, "[0-9]"); break;
			case 'D': rc = rein_buf_puts(b, "[^0-9]"); break;
			case 'w': rc = rein_buf_puts(b, "[A-Za-z0-9_]"); break;
			case 'W': rc = rein_buf_puts(b, "[^A-Za-z0-9_]"); break;
			case 's': rc = rein_buf_puts(b, "[ \t\n\r\f\v]"); break;
			case 'S': rc = rein_buf_puts(b, "[^ \t\n\r\f\v]"); break;
			case 'b': rc = rein_buf_puts(b, "\\b"); break;
			case 'B': rc = rein_buf_puts(b, "\\B"); break;
			case 't': rc = rein_buf_puts(b, "\t"); break;
			case 'n': rc = rein_buf_puts(b, "\n"); break;
			case 'r': rc = rein_buf_puts(b, "\r"); break;
			case 'f': rc = rein_buf_puts(b, "\f"); break;
			case 'v': rc = rein_buf_puts(b, "\v"); break;
			case 'p': case 'P': {
				const char *cls = p + i + 1;
				if (strncmp(cls, "{L}", 3) == 0 || strncmp(cls, "{Letter}", 8) == 0) {
					i += cls[2] == '}' ? 3 : 8;
					rc = rein_buf_puts(b, e == 'p'
						? "([A-Za-z]|[\xC2-\xF4][\x80-\xBF]+)"
						: "[^A-Za-z\x80-\xFF]");
					break;
				}
				return "unicode property class is not supported";
			}
			case 'x': case 'u': {
				int n = e == 'x' ? 2 : 4;
				unsigned long cp;
				if (strnlen(p + i + 1, (size_t)n) < (size_t)n ||
				    hex_digits(p + i + 1, n, &cp) != 0)
					return "bad hex escape";
				if (cp == 0)
					return "NUL escape is not supported";
				i += (size_t)n;
				if (cp < 0x80)
					rc = put_lit(b, (char)cp, false);
				else
					rc = put_utf8(b, cp);
				break;
			}
			default:
				if (e >= '1' && e <= '9') {
					char ref[2] = {'\\', e};
					rc = rein_buf_append(b, ref, 2);
				} else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') ||
					   e == '0') {
					return "unsupported escape";
				} else {
					rc = put_lit(b, e, false);
				}
				break;
			}
			break;
		}
		default:
			rc = rein_buf_append(b, &c, 1);
			break;
		}
	}
	if (rc != REIN_OK)
		return "out of memory";
	if (in_br)
		return "unterminated bracket expression";
	if (b->p == NULL && rein_buf_append(b, "", 0) != REIN_OK)
		return "out of memory";
	return NULL;
}

int schema_regex_compile(sc_regex *r, const char *pattern, rein_err *err)
{
	int rc = REIN_OK;
	rein_buf b = {0};
	memset(r, 0, sizeof *r);
	const char *why = translate(pattern, &b);
	if (why) {
		rc = rein_err_set(err, strcmp(why, "out of memory") == 0 ? REIN_ENOMEM : REIN_ESCHEMA,
				  "regex \"%s\": %s", pattern, why);
		goto out;
	}
	if ((r->src = rein_strdup(pattern)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	locale_t old = enter_c();
	int e = regcomp(&r->re, b.p, REG_EXTENDED | REG_NOSUB);
	leave_c(old);
	if (e != 0) {
		char msg[256];
		regerror(e, &r->re, msg, sizeof msg);
		rc = rein_err_set(err, REIN_ESCHEMA, "regex \"%s\": %s", pattern, msg);
		rein_free(r->src);
		r->src = NULL;
		goto out;
	}
out:
	rein_buf_free(&b);
	return rc;
}

bool schema_regex_match(const sc_regex *r, const char *s, size_t len)
{
	regmatch_t m[1];
	m[0].rm_so = 0;
	m[0].rm_eo = (regoff_t)len;
	locale_t old = enter_c();
	int e = regexec(&r->re, s, 1, m, REG_STARTEND);
	leave_c(old);
	return e == 0;
}

void schema_regex_free(sc_regex *r)
{
	if (r && r->src) {
		regfree(&r->re);
		rein_free(r->src);
		r->src = NULL;
	}
}

size_t schema_utf8_len(const char *s, size_t n)
{
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			count++;
	return count;
}
