/*
 * Redaction: detectors for sensitive values in text and their replacement by
 * typed placeholders, numbered per class and stable within one redactor.
 *
 * The detectors prefer missing an odd format to redacting ordinary data:
 * digits count as a card only when 13 to 19 of them (single spaces or dashes
 * between) pass the Luhn check, an IBAN only when it passes mod-97, a phone
 * number only with a leading '+' or '(' or with separators and ten digits or
 * more ending in a group of four (so dates and amounts are left alone). A
 * match never starts or ends inside a word or a longer number.
 */
#include "base.h"

#include <assert.h>
#include <ctype.h>
#include <string.h>

static const char *const class_names[] = {"email", "phone", "card", "iban", "token", "secret"};
enum { NCLASS = 6 };

typedef struct entry {
	int cls;
	char *value;
	size_t len;
	char ph[32];
} entry;

struct rein_redactor {
	unsigned classes;
	entry *v;
	size_t n, cap;
	unsigned counter[NCLASS];
	char **secrets;
	size_t nsecrets;
};

unsigned rein_redact_class(const char *name)
{
	for (int i = 0; i < NCLASS; i++)
		if (strcmp(name, class_names[i]) == 0)
			return 1u << i;
	return 0;
}

bool rein_luhn_valid(const char *d, size_t n)
{
	if (n < 2)
		return false;
	unsigned sum = 0;
	for (size_t i = 0; i < n; i++) {
		char c = d[n - 1 - i];
		if (c < '0' || c > '9')
			return false;
		unsigned x = (unsigned)(c - '0');
		if (i % 2 == 1) {
			x *= 2;
			if (x > 9)
				x -= 9;
		}
		sum += x;
	}
	return sum % 10 == 0;
}

bool rein_iban_valid(const char *s, size_t n)
{
	if (n < 15 || n > 34 || !isalpha((unsigned char)s[0]) || !isalpha((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]) || !isdigit((unsigned char)s[3]))
		return false;
	unsigned rem = 0;
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[(k + 4) % n]; /* the first four move to the end */
		if (isdigit(c)) {
			rem = (rem * 10 + (unsigned)(c - '0')) % 97;
		} else if (isalpha(c)) {
			unsigned v = (unsigned)(toupper(c) - 'A' + 10);
			rem = (rem * 100 + v) % 97;
		} else {
			return false;
		}
	}
	return rem == 1;
}

int rein_redactor_new(unsigned classes, rein_redactor **out)
{
	rein_redactor *r = rein_calloc(1, sizeof *r);
	if (r == NULL)
		return REIN_ENOMEM;
	r->classes = classes;
	*out = r;
	return REIN_OK;
}

void rein_redactor_free(rein_redactor *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		rein_free(r->v[i].value);
	rein_free(r->v);
	for (size_t i = 0; i < r->nsecrets; i++)
		rein_free(r->secrets[i]);
	rein_free(r->secrets);
	rein_free(r);
}

int rein_redactor_secret(rein_redactor *r, const char *value)
{
	if (strlen(value) < 4)
		return REIN_OK;
	for (size_t i = 0; i < r->nsecrets; i++)
		if (strcmp(r->secrets[i], value) == 0)
			return REIN_OK;
	char **v = rein_realloc(r->secrets, (r->nsecrets + 1) * sizeof *v);
	if (v == NULL)
		return REIN_ENOMEM;
	r->secrets = v;
	if ((v[r->nsecrets] = rein_strdup(value)) == NULL)
		return REIN_ENOMEM;
	r->nsecrets++;
	return REIN_OK;
}

static entry *entry_add(rein_redactor *r, int cls, const char *value, size_t len)
{
	if (r->n == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 8;
		entry *v = rein_realloc(r->v, c * sizeof *v);
		if (v == NULL)
			return NULL;
		r->v = v;
		r->cap = c;
	}
	entry *e = &r->v[r->n];
	if ((e->value = rein_malloc(len + 1)) == NULL)
		return NULL;
	memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->len = len;
	e->cls = cls;
	r->n++;
	return e;
}

/* The placeholder of value in class cls, made on first sight. */
static const char *placeholder(rein_redactor *r, int cls, const char *value, size_t len)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].cls == cls && r->v[i].len == len && memcmp(r->v[i].value, value, len) == 0)
			return r->v[i].ph;
	entry *e = entry_add(r, cls, value, len);
	if (e == NULL)
		return NULL;
	snprintf(e->ph, sizeof e->ph, "[%s:%u]", class_names[cls], ++r->counter[cls]);
	return e->ph;
}

int rein_redactor_learn(rein_redactor *r, const char *ph, const char *value)
{
	size_t pl = strlen(ph);
	const char *colon = strchr(ph, ':');
	if (pl < 5 || pl >= sizeof r->v[0].ph || ph[0] != '[' || ph[pl - 1] != ']' || colon == NULL)
		return REIN_EINVAL;
	int cls = -1;
	for (int i = 0; i < NCLASS; i++)
		if ((size_t)(colon - ph - 1) == strlen(class_names[i]) &&
		    memcmp(ph + 1, class_names[i], strlen(class_names[i])) == 0)
			cls = i;
	unsigned long num = strtoul(colon + 1, NULL, 10);
	if (cls < 0 || num == 0)
		return REIN_EINVAL;
	size_t len = strlen(value);
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].ph, ph) == 0)
			return REIN_OK;
	entry *e = entry_add(r, cls, value, len);
	if (e == NULL)
		return REIN_ENOMEM;
	snprintf(e->ph, sizeof e->ph, "%s", ph);
	if (num > r->counter[cls])
		r->counter[cls] = (unsigned)num;
	return REIN_OK;
}

/* ---- detectors: each returns the end of a match starting at i, or 0 ---- */

static bool is_alnum(char c) { return isalnum((unsigned char)c); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A number may start at i: not inside a word, a longer number or a group
 * of digits ("1234-5678": no match may start at the 5). */
static bool number_start(const char *t, size_t i)
{
	if (i == 0)
		return true;
	char p = t[i - 1];
	if (is_alnum(p) || p == '+')
		return false;
	return !((p == '-' || p == '.' || p == ' ' || p == '/') && i >= 2 && is_digit(t[i - 2]));
}

static size_t match_card(const char *t, size_t n, size_t i)
{
	if (!is_digit(t[i]) || !number_start(t, i))
		return 0;
	char d[20];
	size_t nd = 0, j = i;
	while (j < n) {
		if (is_digit(t[j])) {
			if (nd == 19)
				return 0; /* a longer number */
			d[nd++] = t[j++];
		} else if ((t[j] == ' ' || t[j] == '-') && j + 1 < n && is_digit(t[j + 1])) {
			j++;
		} else {
			break;
		}
	}
	if (nd < 13 || (j < n && is_alnum(t[j])) || !rein_luhn_valid(d, nd))
		return 0;
	return j;
}

static size_t match_iban(const char *t, size_t n, size_t i)
{
	if (i + 15 > n || (i > 0 && is_alnum(t[i - 1])) || !isupper((unsigned char)t[i]) ||
	    !isupper((unsigned char)t[i + 1]) || !is_digit(t[i + 2]) || !is_digit(t[i + 3]))
		return 0;
	char s[35];
	size_t ns = 0, j = i;
	size_t ends[40], ne = 0; /* ends of groups and their lengths so far */
	size_t lens[40];
	while (j < n && ns < 34) {
		if (isdigit((unsigned char)t[j]) || isupper((unsigned char)t[j])) {
			s[ns++] = t[j++];
		} else if (t[j] == ' ' && j + 1 < n && is_alnum(t[j + 1]) && ne < 40) {
			ends[ne] = j;
			lens[ne++] = ns;
			j++;
		} else {
			break;
		}
	}
	if (ne < 40) {
		ends[ne] = j;
		lens[ne++] = ns;
	}
	for (size_t k = ne; k-- > 0;) /* the longest group boundary that checks */
		if ((ends[k] >= n || !is_alnum(t[ends[k]])) && rein_iban_valid(s, lens[k]))
			return ends[k];
	return 0;
}

static bool local_char(char c) { return is_alnum(c) || strchr("._%+-", c) != NULL; }

static size_t match_email(const char *t, size_t n, size_t i)
{
	if (!local_char(t[i]) || t[i] == '.' || (i > 0 && local_char(t[i - 1])))
		return 0;
	size_t j = i;
	while (j < n && local_char(t[j]))
		j++;
	if (j >= n || t[j] != '@')
		return 0;
	size_t k = j + 1, last_dot = 0;
	while (k < n && (is_alnum(t[k]) || t[k] == '-' || (t[k] == '.' && k + 1 < n &&
							   is_alnum(t[k + 1])))) {
		if (t[k] == '.')
			last_dot = k;
		k++;
	}
	if (last_dot == 0 || k - last_dot - 1 < 2)
		return 0;
	for (size_t x = last_dot + 1; x < k; x++)
		if (!isalpha((unsigned char)t[x]))
			return 0;
	return k;
}

static size_t match_phone(const char *t, size_t n, size_t i)
{
	char c = t[i];
	if (!(c == '+' || c == '(' || is_digit(c)) || !number_start(t, i))
		return 0;
	size_t j = i + (c == '+' || c == '(');
	size_t nd = 0, seps = 0, group = 0, end = 0;
	bool open = c == '(';
	while (j < n) {
		if (is_digit(t[j])) {
			nd++;
			group++;
			j++;
			end = j;
		} else if (t[j] == ')' && open && group > 0) {
			open = false;
			j++;
			end = j;
			seps++;
			group = 0;
		} else if ((t[j] == ' ' || t[j] == '-' || t[j] == '.') && j + 1 < n &&
			   (is_digit(t[j + 1]) || t[j + 1] == '(') && group > 0) {
			j++;
			seps++;
			group = 0;
		} else if (t[j] == ' ' && end == j && t[j - 1] == ')' && j + 1 < n &&
			   is_digit(t[j + 1])) {
			j++;
		} else {
			break;
		}
	}
	if (end == 0 || open || nd < 7 || nd > 15 || (end < n && is_alnum(t[end])))
		return 0;
	if (c == '+')
		return nd >= 8 ? end : 0;
	if (c == '(' || (seps >= 1 && nd >= 10 && group >= 4))
		return end;
	return 0;
}

static bool token_char(char c) { return is_alnum(c) || strchr("._~+/=-", c) != NULL; }

static size_t match_token(const char *t, size_t n, size_t i)
{
	static const char *const prefixes[] = {"sk-", "sk_", "rk_", "pk_", "ghp_", "gho_", "ghs_",
					       "github_pat_", "xoxb-", "xoxp-", "AKIA", NULL};
	if (i >= 7 && strncasecmp(t + i - 7, "bearer ", 7) == 0 && (i == 7 || !is_alnum(t[i - 8]))) {
		size_t j = i;
		while (j < n && token_char(t[j]))
			j++;
		return j - i >= 8 ? j : 0;
	}
	if (i > 0 && (is_alnum(t[i - 1]) || t[i - 1] == '_' || t[i - 1] == '-'))
		return 0;
	for (int p = 0; prefixes[p]; p++) {
		size_t pl = strlen(prefixes[p]);
		if (i + pl > n || memcmp(t + i, prefixes[p], pl) != 0)
			continue;
		size_t j = i + pl;
		while (j < n && (is_alnum(t[j]) || t[j] == '_' || t[j] == '-'))
			j++;
		return j - i - pl >= 16 ? j : 0;
	}
	return 0;
}

int rein_redact_text(rein_redactor *r, const char *t, size_t n, char **out, json_t *found)
{
	assert(r != NULL && out != NULL);
	rein_buf b = {0};
	int rc = REIN_OK;
	size_t copied = 0;
	bool has_at = (r->classes & REIN_REDACT_EMAIL) && memchr(t, '@', n) != NULL;
	for (size_t i = 0; i < n;) {
		size_t end = 0;
		int cls = -1;
		for (size_t s = 0; (r->classes & REIN_REDACT_SECRET) && s < r->nsecrets && !end;
		     s++) {
			if (r->secrets[s][0] != t[i])
				continue;
			size_t sl = strlen(r->secrets[s]);
			if (sl <= n - i && memcmp(t + i, r->secrets[s], sl) == 0)
				end = i + sl, cls = 5;
		}
		if (!end && (r->classes & REIN_REDACT_TOKEN) && (end = match_token(t, n, i)))
			cls = 4;
		if (!end && has_at && (end = match_email(t, n, i)))
			cls = 0;
		if (!end && (r->classes & REIN_REDACT_IBAN) && (end = match_iban(t, n, i)))
			cls = 3;
		if (!end && (r->classes & REIN_REDACT_CARD) && (end = match_card(t, n, i)))
			cls = 2;
		if (!end && (r->classes & REIN_REDACT_PHONE) && (end = match_phone(t, n, i)))
			cls = 1;
		if (!end) {
			i++;
			continue;
		}
		const char *ph = placeholder(r, cls, t + i, end - i);
		if (ph == NULL || rein_buf_append(&b, t + copied, i - copied) != REIN_OK ||
		    rein_buf_puts(&b, ph) != REIN_OK) {
			rc = REIN_ENOMEM;
			goto out;
		}
		if (found) {
			json_t *v = json_stringn(t + i, end - i);
			if (v == NULL || json_object_set_new(found, ph, v) != 0) {
				rc = REIN_ENOMEM;
				goto out;
			}
		}
		copied = i = end;
	}
	if (b.p == NULL) {
		*out = NULL;
		goto out;
	}
	if (rein_buf_append(&b, t + copied, n - copied) != REIN_OK) {
		rc = REIN_ENOMEM;
		goto out;
	}
	*out = b.p;
	b.p = NULL;
out:
	rein_buf_free(&b);
	return rc;
}

int rein_redact_json(rein_redactor *r, json_t *v, json_t **out, json_t *found)
{
	int rc = REIN_OK;
	json_t *copy = NULL;
	if (json_is_string(v)) {
		char *s = NULL;
		if ((rc = rein_redact_text(r, json_string_value(v), json_string_length(v), &s,
					   found)) != REIN_OK)
			goto out;
		copy = s ? json_string(s) : json_incref(v);
		rein_free(s);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			json_t *y = NULL;
			if ((rc = rein_redact_json(r, x, &y, found)) != REIN_OK)
				goto out;
			if (y != x && copy == NULL && (copy = json_copy(v)) == NULL) {
				json_decref(y);
				rc = REIN_ENOMEM;
				goto out;
			}
			if (y != x)
				json_object_set_new(copy, k, y);
			else
				json_decref(y);
		}
		if (copy == NULL)
			copy = json_incref(v);
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *x = json_array_get(v, i), *y = NULL;
			if ((rc = rein_redact_json(r, x, &y, found)) != REIN_OK)
				goto out;
			if (y != x && copy == NULL && (copy = json_copy(v)) == NULL) {
				json_decref(y);
				rc = REIN_ENOMEM;
				goto out;
			}
			if (y != x)
				json_array_set_new(copy, i, y);
			else
				json_decref(y);
		}
		if (copy == NULL)
			copy = json_incref(v);
	} else if (json_is_integer(v) && (r->classes & (REIN_REDACT_CARD | REIN_REDACT_PHONE))) {
		/* a card or phone number written as a JSON number: the placeholder is a
		 * string, and found keeps the number, so unredaction gives it back */
		char num[32];
		int len = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		size_t end = (r->classes & REIN_REDACT_CARD) ? match_card(num, (size_t)len, 0) : 0;
		const char *ph = NULL;
		if (end == (size_t)len && (ph = placeholder(r, 2, num, end)) == NULL) {
			rc = REIN_ENOMEM;
			goto out;
		}
		if (ph && found && json_object_set(found, ph, v) != 0) {
			rc = REIN_ENOMEM;
			goto out;
		}
		copy = ph ? json_string(ph) : json_incref(v);
	} else {
		copy = json_incref(v);
	}
	if (copy == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	*out = copy;
	copy = NULL;
out:
	json_decref(copy);
	return rc;
}

/* s with each placeholder of map put back; NULL when there is none (or OOM: *oom). */
static char *unredact_text(const char *s, size_t n, const json_t *map, bool *oom)
{
	rein_buf b = {0};
	size_t copied = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '[')
			continue;
		const char *close = memchr(s + i, ']', n - i < 32 ? n - i : 32);
		if (close == NULL)
			continue;
		size_t len = (size_t)(close - (s + i)) + 1;
		json_t *val = json_object_getn(map, s + i, len);
		json_t *num = json_is_integer(val) ? val : NULL;
		char digits[32];
		if (num) { /* a number inside text: its digits */
			snprintf(digits, sizeof digits, "%" JSON_INTEGER_FORMAT,
				 json_integer_value(num));
			if (rein_buf_append(&b, s + copied, i - copied) != REIN_OK ||
			    rein_buf_puts(&b, digits) != REIN_OK) {
				*oom = true;
				rein_buf_free(&b);
				return NULL;
			}
			copied = i + len;
			i = copied - 1;
			continue;
		}
		if (!json_is_string(val))
			continue;
		if (rein_buf_append(&b, s + copied, i - copied) != REIN_OK ||
		    rein_buf_append(&b, json_string_value(val), json_string_length(val)) != REIN_OK) {
			*oom = true;
			rein_buf_free(&b);
			return NULL;
		}
		copied = i + len;
		i = copied - 1;
	}
	if (b.p == NULL)
		return NULL;
	if (rein_buf_append(&b, s + copied, n - copied) != REIN_OK) {
		*oom = true;
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

json_t *rein_unredact_json(json_t *v, const json_t *map)
{
	if (json_is_string(v)) {
		json_t *whole = json_object_getn(map, json_string_value(v), json_string_length(v));
		if (whole && !json_is_string(whole))
			return json_incref(whole); /* a number that was redacted */
		bool oom = false;
		char *s = unredact_text(json_string_value(v), json_string_length(v), map, &oom);
		if (oom)
			return NULL;
		json_t *r = s ? json_string(s) : json_incref(v);
		rein_free(s);
		return r;
	}
	if (json_is_object(v)) {
		json_t *copy = json_object();
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			json_t *y = rein_unredact_json(x, map);
			if (copy == NULL || y == NULL || json_object_set_new(copy, k, y) != 0) {
				json_decref(copy);
				return NULL;
			}
		}
		return copy;
	}
	if (json_is_array(v)) {
		json_t *copy = json_array();
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *y = rein_unredact_json(json_array_get(v, i), map);
			if (copy == NULL || y == NULL || json_array_append_new(copy, y) != 0) {
				json_decref(copy);
				return NULL;
			}
		}
		return copy;
	}
	return json_incref(v);
}
