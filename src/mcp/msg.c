/*
 * The pure half of the MCP client: framing (newline-delimited lines for
 * stdio, Server-Sent Events for streamable HTTP), JSON-RPC 2.0 message
 * classification and the reading of tools/call results. Nothing here touches
 * the loop, so the libFuzzer target drives these functions directly.
 */
#include "mcp_int.h"

#include <stdio.h>
#include <string.h>

#define MCP_MAX_UNIT ((size_t)16 << 20)

const char mcp_version_offered[] = "2026-07-28";

static const char *const versions[] = {
	"2026-07-28",
	"2025-11-25",
	"2025-06-18",
	"2025-03-26",
};

bool mcp_version_supported(const char *v)
{
	if (v == NULL)
		return false;
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
		if (strcmp(v, versions[i]) == 0)
			return true;
	return false;
}

/* ---- lines ----------------------------------------------------------- */

static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

static int line_emit(const char *p, size_t n, mcp_unit_cb cb, void *ud)
{
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (blank(p, n))
		return 0;
	return cb(ud, p, n);
}

int mcp_lines_feed(mcp_lines *l, const char *p, size_t n, mcp_unit_cb cb, void *ud)
{
	size_t max = l->max ? l->max : MCP_MAX_UNIT;
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		if (l->buf.len + take > max)
			return REIN_ELIMIT;
		if (nl == NULL)
			return rein_buf_append(&l->buf, p, take);
		int rc;
		if (l->buf.len == 0) {
			rc = line_emit(p, take, cb, ud);
		} else {
			if (rein_buf_append(&l->buf, p, take))
				return REIN_ENOMEM;
			rc = line_emit(l->buf.p, l->buf.len, cb, ud);
			l->buf.len = 0;
		}
		if (rc)
			return rc;
		p += take + 1;
		n -= take + 1;
	}
	return REIN_OK;
}

void mcp_lines_free(mcp_lines *l) { rein_buf_free(&l->buf); }

/* ---- SSE ------------------------------------------------------------- */

/* Dispatches the pending event (at a blank line) and resets it. */
static int sse_dispatch(mcp_sse *s, mcp_unit_cb cb, void *ud)
{
	int rc = 0;
	bool typed_ok = s->event.len == 0 ||
			(s->event.len == 7 && memcmp(s->event.p, "message", 7) == 0);
	if (s->has_data && typed_ok) {
		const char *d = s->data.len ? s->data.p : "";
		rc = cb(ud, d, s->data.len);
	}
	s->data.len = 0;
	s->event.len = 0;
	s->has_data = false;
	return rc;
}

/* One complete line (without its terminator). */
static int sse_line(mcp_sse *s, const char *p, size_t n, mcp_unit_cb cb, void *ud)
{
	if (n == 0)
		return sse_dispatch(s, cb, ud);
	if (p[0] == ':')
		return 0; /* comment */
	const char *colon = memchr(p, ':', n);
	size_t flen = colon ? (size_t)(colon - p) : n;
	const char *v = colon ? colon + 1 : p + n;
	size_t vlen = colon ? n - flen - 1 : 0;
	if (vlen > 0 && v[0] == ' ') {
		v++;
		vlen--;
	}
	if (flen == 4 && memcmp(p, "data", 4) == 0) {
		if (s->has_data && rein_buf_append(&s->data, "\n", 1))
			return REIN_ENOMEM;
		if (rein_buf_append(&s->data, v, vlen))
			return REIN_ENOMEM;
		s->has_data = true;
	} else if (flen == 5 && memcmp(p, "event", 5) == 0) {
		s->event.len = 0;
		if (rein_buf_append(&s->event, v, vlen))
			return REIN_ENOMEM;
	}
	/* id and retry only matter for resumption, which we do not do */
	return 0;
}

int mcp_sse_feed(mcp_sse *s, const char *p, size_t n, mcp_unit_cb cb, void *ud)
{
	size_t max = s->max ? s->max : MCP_MAX_UNIT;
	if (n > 0 && s->skip_lf) {
		s->skip_lf = false;
		if (p[0] == '\n') {
			p++;
			n--;
		}
	}
	while (n > 0) {
		size_t i = 0;
		while (i < n && p[i] != '\n' && p[i] != '\r')
			i++;
		if (s->line.len + i > max || s->data.len + s->line.len + i > max)
			return REIN_ELIMIT;
		if (i == n) /* no terminator yet */
			return rein_buf_append(&s->line, p, n);
		int rc;
		if (s->line.len == 0) {
			rc = sse_line(s, p, i, cb, ud);
		} else {
			if (rein_buf_append(&s->line, p, i))
				return REIN_ENOMEM;
			rc = sse_line(s, s->line.p, s->line.len, cb, ud);
			s->line.len = 0;
		}
		size_t skip = 1;
		if (p[i] == '\r') {
			if (i + 1 < n) {
				if (p[i + 1] == '\n')
					skip = 2;
			} else {
				s->skip_lf = true;
			}
		}
		if (rc)
			return rc;
		p += i + skip;
		n -= i + skip;
	}
	return REIN_OK;
}

int mcp_sse_finish(mcp_sse *s, mcp_unit_cb cb, void *ud)
{
	int rc = 0;
	if (s->line.len > 0) {
		rc = sse_line(s, s->line.p, s->line.len, cb, ud);
		s->line.len = 0;
	}
	if (rc == 0)
		rc = sse_dispatch(s, cb, ud);
	s->skip_lf = false;
	return rc;
}

void mcp_sse_free(mcp_sse *s)
{
	rein_buf_free(&s->line);
	rein_buf_free(&s->data);
	rein_buf_free(&s->event);
}

/* ---- JSON-RPC -------------------------------------------------------- */

void mcp_msg_classify(const json_t *obj, mcp_msg *out)
{
	memset(out, 0, sizeof *out);
	out->obj = obj;
	out->kind = MCP_MSG_INVALID;
	if (!json_is_object(obj)) {
		out->why = "not an object";
		return;
	}
	const json_t *id = json_object_get(obj, "id");
	if (id != NULL && !json_is_null(id)) {
		if (json_is_integer(id)) {
			out->id = id;
			out->id_int = true;
			out->id_val = json_integer_value(id);
		} else if (json_is_string(id)) {
			out->id = id;
		} else {
			out->why = "id is neither a string nor an integer";
			return;
		}
	}
	const json_t *ver = json_object_get(obj, "jsonrpc");
	if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
		out->why = "jsonrpc is not \"2.0\"";
		return;
	}
	const json_t *method = json_object_get(obj, "method");
	const json_t *result = json_object_get(obj, "result");
	const json_t *error = json_object_get(obj, "error");
	if (method != NULL) {
		if (!json_is_string(method)) {
			out->why = "method is not a string";
			return;
		}
		out->method = json_string_value(method);
		out->params = json_object_get(obj, "params");
		out->kind = out->id ? MCP_MSG_REQUEST : MCP_MSG_NOTIFICATION;
		return;
	}
	if (out->id == NULL) {
		/* a response to something we cannot identify (or id null: the
		 * server could not read our request) */
		out->why = "response without an id";
		return;
	}
	if (result != NULL && error != NULL) {
		out->why = "both result and error";
		return;
	}
	if (result != NULL) {
		out->result = result;
		out->kind = MCP_MSG_RESULT;
		return;
	}
	if (!json_is_object(error)) {
		out->why = error ? "error is not an object" : "neither result nor error";
		return;
	}
	const json_t *code = json_object_get(error, "code");
	const json_t *msg = json_object_get(error, "message");
	out->err_code = json_is_integer(code) ? json_integer_value(code) : 0;
	out->err_message = json_is_string(msg) ? json_string_value(msg) : "";
	out->kind = MCP_MSG_ERROR;
}

int mcp_msg_parse(const char *text, size_t len, mcp_msg_cb cb, void *ud, rein_err *err)
{
	rein_err perr = {0};
	json_t *root = rein_json_parse(text, len, &perr);
	int rc = REIN_OK;
	if (root == NULL) {
		rc = rein_err_set(err, REIN_EINVAL, "malformed JSON: %s", perr.msg);
		rein_err_clear(&perr);
		goto out;
	}
	if (json_is_object(root)) {
		mcp_msg m;
		mcp_msg_classify(root, &m);
		rc = cb(ud, &m);
		goto out;
	}
	if (!json_is_array(root) || json_array_size(root) == 0) {
		rc = rein_err_set(err, REIN_EINVAL, "a message must be a JSON object");
		goto out;
	}
	size_t i;
	json_t *el;
	json_array_foreach(root, i, el) {
		if (!json_is_object(el)) {
			rc = rein_err_set(err, REIN_EINVAL, "batch element %zu is not an object", i);
			goto out;
		}
	}
	json_array_foreach(root, i, el) {
		mcp_msg m;
		mcp_msg_classify(el, &m);
		rc = cb(ud, &m);
		if (rc)
			goto out;
	}
out:
	json_decref(root);
	return rc;
}

bool mcp_tool_result(const json_t *result, rein_mcp_result *res)
{
	if (!json_is_object(result))
		return false;
	const json_t *content = json_object_get(result, "content");
	const json_t *structured = json_object_get(result, "structuredContent");
	res->result = result;
	res->content = json_is_array(content) ? content : NULL;
	res->structured = structured && !json_is_null(structured) ? structured : NULL;
	res->is_error = json_is_true(json_object_get(result, "isError"));
	res->status = res->is_error ? REIN_MCP_TOOL_ERROR : REIN_MCP_OK;
	if (res->is_error) {
		const char *text = NULL;
		size_t i;
		const json_t *c;
		if (res->content)
			json_array_foreach(res->content, i, c) {
				const json_t *t = json_object_get(c, "text");
				if (json_is_string(t)) {
					text = json_string_value(t);
					break;
				}
			}
		snprintf(res->errmsg, sizeof res->errmsg, "tool error: %s",
			 text ? text : "(no text)");
	}
	return true;
}
