/*
 * The accumulator both protocols fill, whole or delta by delta, and the one
 * place that turns it into a normalized response. Tool-call arguments are
 * parsed here, one call at a time, so a call whose arguments are not JSON is
 * reported in place (arguments_error and the raw text) instead of failing
 * the whole answer.
 */
#include <assert.h>
#include <string.h>

#include "model_int.h"

model_call_acc *model_acc_call(model_acc *a, size_t index)
{
	if (index >= MODEL_MAX_CALLS)
		return NULL;
	if (index >= a->ncalls)
		a->ncalls = index + 1;
	a->calls[index].used = true;
	return &a->calls[index];
}

void model_acc_set(char **slot, const char *s)
{
	rein_free(*slot);
	*slot = s ? rein_strdup(s) : NULL;
}

void model_acc_free(model_acc *a)
{
	if (a == NULL)
		return;
	rein_buf_free(&a->text);
	for (size_t i = 0; i < a->ncalls; i++) {
		rein_free(a->calls[i].id);
		rein_free(a->calls[i].name);
		rein_buf_free(&a->calls[i].args);
		json_decref(a->calls[i].input);
	}
	rein_free(a->model);
	rein_free(a->id);
	memset(a, 0, sizeof *a);
}

/* Parses arguments text as one JSON value; "" (no arguments) reads as {}. */
static json_t *parse_args(const rein_buf *b, char *why, size_t wlen)
{
	size_t n = b->len;
	const char *p = b->len ? b->p : "";
	size_t k = 0;
	while (k < n && (p[k] == ' ' || p[k] == '\n' || p[k] == '\t' || p[k] == '\r'))
		k++;
	if (k == n)
		return json_object();
	json_error_t je;
	json_t *j = json_loadb(p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (j == NULL) {
		snprintf(why, wlen, "arguments are not JSON: %s (col %d)", je.text, je.column);
	} else if (!json_is_object(j)) {
		snprintf(why, wlen, "arguments are not a JSON object");
		json_decref(j);
		j = NULL;
	}
	return j;
}

static json_t *usage_json(const rein_model_usage *u)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "input", (json_int_t)u->input, "output",
			 (json_int_t)u->output, "cached", (json_int_t)u->cached, "cache_write",
			 (json_int_t)u->cache_write, "reasoning", (json_int_t)u->reasoning);
}

/* Sets key to v (stolen); false when out of memory. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(o, key, v) == 0;
}

json_t *model_acc_finish(model_acc *a, const model_shape *shape, const char *finish_norm)
{
	json_t *r = json_object();
	json_t *calls = json_array();
	json_t *output = NULL;
	char output_why[600] = "";
	bool output_found = false;
	if (r == NULL || calls == NULL)
		goto fail;
	for (size_t i = 0; i < a->ncalls; i++) {
		model_call_acc *c = &a->calls[i];
		if (!c->used)
			continue;
		char why[256] = "";
		json_t *args = c->input ? json_incref(c->input) : parse_args(&c->args, why, sizeof why);
		const char *name = c->name ? c->name : "";
		if (shape && shape->output_tool && strcmp(name, shape->output_tool) == 0 &&
		    !output_found) {
			output_found = true;
			if (args == NULL) {
				snprintf(output_why, sizeof output_why, "%s: %s", name, why);
			} else if (shape->output_wrapped) {
				output = json_incref(json_object_get(args, "value"));
				if (output == NULL)
					snprintf(output_why, sizeof output_why,
						 "%s: no \"value\" member", name);
				json_decref(args);
			} else {
				output = args;
			}
			continue;
		}
		json_t *call = json_pack("{s:s,s:s}", "id", c->id ? c->id : "", "name", name);
		if (call == NULL || json_array_append_new(calls, call) != 0) {
			json_decref(args);
			goto fail;
		}
		if (args != NULL) {
			if (!put(call, "arguments", args))
				goto fail;
		} else if (!put(call, "arguments_error", json_string(why)) ||
			   !put(call, "arguments_raw",
				json_stringn(c->args.len ? c->args.p : "", c->args.len))) {
			goto fail;
		}
	}
	/* text may hold any bytes the server sent: keep valid UTF-8 only */
	json_t *text = json_stringn(a->text.len ? a->text.p : "", a->text.len);
	if (text == NULL)
		text = json_string("");
	if (!put(r, "text", text))
		goto fail;
	if (shape && shape->output_text) {
		json_error_t je;
		output = json_loadb(a->text.len ? a->text.p : "", a->text.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
		if (output == NULL)
			snprintf(output_why, sizeof output_why, "the answer is not JSON: %s",
				 je.text);
	} else if (shape && shape->output_tool && !output_found) {
		snprintf(output_why, sizeof output_why, "the answer has no %s tool call",
			 shape->output_tool);
	}
	if (output != NULL) {
		if (!put(r, "output", output))
			goto fail;
		output = NULL;
	} else if (output_why[0] != '\0' && !put(r, "output_error", json_string(output_why))) {
		goto fail;
	}
	/* the forced output tool ends the turn: that is a stop, not a tool call */
	if (output_found && strcmp(finish_norm, "tool_calls") == 0 && json_array_size(calls) == 0)
		finish_norm = "stop";
	if (json_object_set(r, "tool_calls", calls) != 0 ||
	    !put(r, "finish_reason", json_string(finish_norm)))
		goto fail;
	if (a->finish[0] != '\0' && !put(r, "finish_raw", json_string(a->finish)))
		goto fail;
	if (!put(r, "model", json_string(a->model ? a->model : "")))
		goto fail;
	if (a->id != NULL && !put(r, "id", json_string(a->id)))
		goto fail;
	if (!put(r, "usage", usage_json(&a->usage)))
		goto fail;
	json_decref(calls);
	return r;
fail:
	json_decref(output);
	json_decref(calls);
	json_decref(r);
	return NULL;
}

void model_parsed_free(model_parsed *p)
{
	if (p == NULL)
		return;
	json_decref(p->response);
	p->response = NULL;
}

bool model_error_body(const char *body, size_t len, char *why, size_t wlen, char *type,
		      size_t tlen)
{
	json_t *j = json_loadb(body ? body : "", len, JSON_ALLOW_NUL, NULL);
	json_t *e = json_object_get(j, "error");
	bool found = false;
	if (json_is_object(e)) {
		const char *t = json_string_value(json_object_get(e, "type"));
		const char *m = json_string_value(json_object_get(e, "message"));
		if (t == NULL)
			t = json_string_value(json_object_get(e, "code"));
		snprintf(why, wlen, "%s: %s", t ? t : "error", m ? m : "(no message)");
		snprintf(type, tlen, "%s", t ? t : "");
		found = true;
	} else if (json_is_string(e)) {
		snprintf(why, wlen, "error: %s", json_string_value(e));
		snprintf(type, tlen, "%s", "");
		found = true;
	}
	json_decref(j);
	return found;
}

json_t *model_whole_json(const char *body, size_t len, model_parsed *out)
{
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &je);
	if (j == NULL) {
		/* a whole body that arrived complete (the io layer saw its end) */
		out->kind = MODEL_PARSE_MALFORMED;
		snprintf(out->why, sizeof out->why, "the body is not JSON: %s", je.text);
	} else if (model_error_body(body, len, out->why, sizeof out->why, out->err_type,
				    sizeof out->err_type)) {
		out->kind = MODEL_PARSE_ERROR;
		out->transient = model_error_type_transient(out->err_type);
		json_decref(j);
		j = NULL;
	}
	return j;
}

void model_whole_nomem(model_parsed *out)
{
	out->kind = MODEL_PARSE_MALFORMED;
	snprintf(out->why, sizeof out->why, "out of memory reading the body");
}

void model_whole_done(model_acc *a, const model_shape *shape, const char *finish_norm,
		      model_parsed *out)
{
	out->response = model_acc_finish(a, shape, finish_norm);
	if (out->response == NULL)
		model_whole_nomem(out);
	else
		out->kind = MODEL_PARSE_OK;
}

bool model_error_type_transient(const char *type)
{
	static const char *const words[] = {"server_error", "api_error", "overloaded",
					    "rate_limit", "timeout", "unavailable"};
	if (type == NULL)
		return false;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(type, words[i]) != NULL)
			return true;
	return false;
}

bool model_looks_json(const char *body, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')
			continue;
		return body[i] == '{';
	}
	return false;
}

void model_parse_stream(const char *body, size_t len, const model_shape *shape,
			model_parsed *out, model_sse_cb on_event,
			const char *(*finish)(const char *), const char *end)
{
	model_stream st = {.out = out};
	model_sse sse = {0};
	int rc = model_sse_feed(&sse, body, len, on_event, &st);
	if (st.failed)
		goto out;
	if (rc != 0) {
		out->kind = MODEL_PARSE_MALFORMED;
		snprintf(out->why, sizeof out->why, "the event stream is unreadable: %s",
			 rein_strerror(rc));
		goto out;
	}
	out->response = model_acc_finish(&st.acc, shape, finish(st.acc.finish));
	if (!st.done) {
		out->kind = MODEL_PARSE_TRUNCATED;
		snprintf(out->why, sizeof out->why,
			 "the stream ended before %s (%zu bytes, %zu bytes of text)", end, len,
			 st.acc.text.len);
	} else if (out->response == NULL) {
		out->kind = MODEL_PARSE_MALFORMED;
		snprintf(out->why, sizeof out->why, "out of memory reading the stream");
	} else {
		out->kind = MODEL_PARSE_OK;
		json_object_set_new(out->response, "streamed", json_true());
	}
out:
	model_sse_free(&sse);
	model_acc_free(&st.acc);
}
