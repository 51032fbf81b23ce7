/*
 * The Server-Sent Events parser the streaming providers read their bodies
 * with. It is incremental (chunks may split lines, CRLF pairs, UTF-8) so the
 * same code serves a whole body today and a body fed as it arrives later;
 * what it cannot do is tell a complete stream from a cut one, which is the
 * protocols' business (model_sse_pending helps them).
 */
#include <assert.h>
#include <string.h>

#include "model_int.h"

#define SSE_MAX_DEFAULT (16u << 20)

static int dispatch(model_sse *s, model_sse_cb cb, void *ud)
{
	int rc = 0;
	if (s->has_data)
		rc = cb(ud, s->event.len ? s->event.p : "", s->data.len ? s->data.p : "",
			s->data.len);
	s->data.len = 0;
	if (s->data.p)
		s->data.p[0] = '\0';
	s->event.len = 0;
	if (s->event.p)
		s->event.p[0] = '\0';
	s->has_data = false;
	s->any = false;
	return rc;
}

/* One complete line (without its end). */
static int line(model_sse *s, const char *p, size_t n, model_sse_cb cb, void *ud)
{
	if (n == 0)
		return dispatch(s, cb, ud);
	if (p[0] == ':')
		return 0;
	const char *colon = memchr(p, ':', n);
	size_t flen = colon ? (size_t)(colon - p) : n;
	const char *v = colon ? colon + 1 : p + n;
	size_t vlen = (size_t)(p + n - v);
	if (vlen > 0 && v[0] == ' ') {
		v++;
		vlen--;
	}
	s->any = true;
	if (flen == 4 && memcmp(p, "data", 4) == 0) {
		size_t max = s->max ? s->max : SSE_MAX_DEFAULT;
		if (s->data.len + vlen + 1 > max)
			return REIN_ELIMIT;
		if (s->has_data && rein_buf_append(&s->data, "\n", 1) != REIN_OK)
			return REIN_ENOMEM;
		if (rein_buf_append(&s->data, v, vlen) != REIN_OK)
			return REIN_ENOMEM;
		s->has_data = true;
	} else if (flen == 5 && memcmp(p, "event", 5) == 0) {
		s->event.len = 0;
		if (rein_buf_append(&s->event, v, vlen) != REIN_OK)
			return REIN_ENOMEM;
	}
	/* id, retry and unknown fields: nothing to do for a one-shot body */
	return 0;
}

int model_sse_feed(model_sse *s, const char *p, size_t n, model_sse_cb cb, void *ud)
{
	assert(s != NULL && cb != NULL);
	size_t max = s->max ? s->max : SSE_MAX_DEFAULT;
	size_t i = 0;
	if (n > 0 && s->skip_lf) {
		if (p[0] == '\n')
			i = 1;
		s->skip_lf = false;
	}
	while (i < n) {
		size_t j = i;
		while (j < n && p[j] != '\n' && p[j] != '\r')
			j++;
		if (j == n) { /* a partial line: keep it */
			if (s->line.len + (n - i) > max)
				return REIN_ELIMIT;
			if (rein_buf_append(&s->line, p + i, n - i) != REIN_OK)
				return REIN_ENOMEM;
			break;
		}
		int rc;
		if (s->line.len > 0) {
			if (s->line.len + (j - i) > max)
				return REIN_ELIMIT;
			if (rein_buf_append(&s->line, p + i, j - i) != REIN_OK)
				return REIN_ENOMEM;
			size_t len = s->line.len;
			s->line.len = 0; /* the callback may not re-enter; reuse is safe */
			rc = line(s, s->line.p, len, cb, ud);
		} else {
			rc = line(s, p + i, j - i, cb, ud);
		}
		if (rc != 0)
			return rc;
		if (p[j] == '\r') {
			if (j + 1 < n) {
				if (p[j + 1] == '\n')
					j++;
			} else {
				s->skip_lf = true;
			}
		}
		i = j + 1;
	}
	return 0;
}

bool model_sse_pending(const model_sse *s) { return s->any || s->line.len > 0; }

void model_sse_free(model_sse *s)
{
	if (s == NULL)
		return;
	rein_buf_free(&s->line);
	rein_buf_free(&s->data);
	rein_buf_free(&s->event);
}
