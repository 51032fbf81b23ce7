/*
 * The OpenAI chat completions protocol (and the many servers that speak it):
 * rendering a normalized request as a /chat/completions body, and reading a
 * completion back, whole or as a stream of chunks whose tool calls arrive as
 * fragments joined by their index. A stream is complete only at its
 * "data: [DONE]" line; anything short of that is a truncated answer.
 */
#include <assert.h>
#include <string.h>

#include "model_int.h"

/* ---- rendering ---------------------------------------------------------- */

static json_t *render_calls(const json_t *calls)
{
	json_t *out = json_array();
	size_t i;
	const json_t *c;
	json_array_foreach(calls, i, c) {
		const json_t *args = json_object_get(c, "arguments");
		char *text = NULL;
		if (args != NULL)
			text = rein_json_dump(args);
		else
			text = rein_strdup(json_string_value(json_object_get(c, "arguments_raw")));
		json_t *one = text ? json_pack("{s:O,s:s,s:{s:O,s:s}}", "id",
					       json_object_get(c, "id"), "type", "function",
					       "function", "name", json_object_get(c, "name"),
					       "arguments", text)
				   : NULL;
		rein_free(text);
		if (one == NULL || json_array_append_new(out, one) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static json_t *render_message(const json_t *m)
{
	const char *role = json_string_value(json_object_get(m, "role"));
	json_t *content = json_object_get(m, "content");
	if (strcmp(role, "user") == 0)
		return json_pack("{s:s,s:O}", "role", "user", "content", content);
	if (strcmp(role, "tool") == 0)
		return json_pack("{s:s,s:O,s:O}", "role", "tool", "tool_call_id",
				 json_object_get(m, "tool_call_id"), "content", content);
	json_t *out = json_pack("{s:s,s:O}", "role", "assistant", "content",
				content ? content : json_null());
	const json_t *calls = json_object_get(m, "tool_calls");
	if (out != NULL && json_array_size(calls) > 0 &&
	    json_object_set_new(out, "tool_calls", render_calls(calls)) != 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/*
 * Whether OpenAI's strict structured outputs accept schema as it is: the root
 * is an object, and every object schema inside says additionalProperties:
 * false and lists each of its properties in required. rein never rewrites a
 * schema to fit (making optional properties required changes what a valid
 * answer is); a schema that does not fit is sent with strict: false and the
 * answer is still validated (docs/models.md, "Structured output").
 */
static bool strict_fits(const json_t *s, bool root)
{
	if (json_is_boolean(s))
		return !root;
	if (!json_is_object(s))
		return false;
	const json_t *type = json_object_get(s, "type");
	const json_t *props = json_object_get(s, "properties");
	bool object = props != NULL || (json_is_string(type) && strcmp(json_string_value(type), "object") == 0);
	if (root && !object)
		return false;
	if (object) {
		if (!json_is_false(json_object_get(s, "additionalProperties")))
			return false;
		const json_t *req = json_object_get(s, "required");
		const char *k;
		const json_t *v;
		json_object_foreach((json_t *)props, k, v) {
			bool listed = false;
			size_t i;
			const json_t *r;
			json_array_foreach(req, i, r)
				listed |= json_is_string(r) && strcmp(json_string_value(r), k) == 0;
			if (!listed || !strict_fits(v, false))
				return false;
		}
	}
	static const char *const one[] = {"items", "not", NULL};
	for (size_t i = 0; one[i]; i++)
		if (json_object_get(s, one[i]) && !strict_fits(json_object_get(s, one[i]), false))
			return false;
	static const char *const many[] = {"anyOf", "allOf", "oneOf", "prefixItems", NULL};
	for (size_t i = 0; many[i]; i++) {
		size_t j;
		const json_t *v;
		json_array_foreach(json_object_get(s, many[i]), j, v)
			if (!strict_fits(v, false))
				return false;
	}
	static const char *const maps[] = {"$defs", "definitions", NULL};
	for (size_t i = 0; maps[i]; i++) {
		const char *k;
		const json_t *v;
		json_object_foreach(json_object_get(s, maps[i]), k, v)
			if (!strict_fits(v, false))
				return false;
	}
	return true;
}

int model_openai_render(const json_t *req, const model_wire *w, json_t **body,
			model_shape *shape, rein_err *err)
{
	assert(req != NULL && w != NULL && body != NULL && shape != NULL);
	memset(shape, 0, sizeof *shape);
	json_t *b = json_pack("{s:O,s:[]}", "model", json_object_get(req, "model"), "messages");
	if (b == NULL)
		goto nomem;
	json_t *msgs = json_object_get(b, "messages");
	json_t *system = json_object_get(req, "system");
	if (system != NULL &&
	    json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "system", "content",
						  system)) != 0)
		goto nomem;
	size_t i;
	const json_t *m;
	json_array_foreach(json_object_get(req, "messages"), i, m) {
		if (json_array_append_new(msgs, render_message(m)) != 0)
			goto nomem;
	}
	const json_t *tools = json_object_get(req, "tools");
	if (json_array_size(tools) > 0) {
		json_t *ts = json_array();
		if (ts == NULL || json_object_set_new(b, "tools", ts) != 0)
			goto nomem;
		const json_t *t;
		json_array_foreach(tools, i, t) {
			json_t *fn = json_pack("{s:O,s:O}", "name", json_object_get(t, "name"),
					       "parameters", json_object_get(t, "parameters"));
			if (fn == NULL ||
			    json_array_append_new(ts, json_pack("{s:s,s:o}", "type", "function",
								"function", fn)) != 0)
				goto nomem;
			json_t *d = json_object_get(t, "description");
			if (d != NULL && json_object_set(fn, "description", d) != 0)
				goto nomem;
			json_t *s = json_object_get(t, "strict");
			if (s != NULL && json_object_set(fn, "strict", s) != 0)
				goto nomem;
		}
	}
	const json_t *schema = json_object_get(req, "output_schema");
	if (schema != NULL) {
		const char *name = json_string_value(json_object_get(req, "output_name"));
		json_t *rf = json_pack("{s:s,s:{s:s,s:O,s:b}}", "type", "json_schema",
				       "json_schema", "name", name ? name : "final_answer",
				       "schema", schema, "strict", strict_fits(schema, true));
		if (rf == NULL || json_object_set_new(b, "response_format", rf) != 0)
			goto nomem;
		shape->output_text = true;
	}
	json_int_t max = json_integer_value(json_object_get(req, "max_tokens"));
	if (max <= 0)
		max = w->max_tokens;
	if (max > 0 && json_object_set_new(b, w->max_tokens_field ? w->max_tokens_field
								  : "max_completion_tokens",
					   json_integer(max)) != 0)
		goto nomem;
	json_t *temp = json_object_get(req, "temperature");
	if (temp != NULL && json_object_set(b, "temperature", temp) != 0)
		goto nomem;
	if (json_is_true(json_object_get(req, "stream"))) {
		if (json_object_set_new(b, "stream", json_true()) != 0 ||
		    json_object_set_new(b, "stream_options",
					json_pack("{s:b}", "include_usage", 1)) != 0)
			goto nomem;
	}
	*body = b;
	return REIN_OK;
nomem:
	json_decref(b);
	return rein_err_set(err, REIN_ENOMEM, "out of memory rendering the request");
}

/* ---- reading ------------------------------------------------------------ */

void model_openai_usage(const json_t *usage, rein_model_usage *u)
{
	if (!json_is_object(usage))
		return;
	u->input = json_integer_value(json_object_get(usage, "prompt_tokens"));
	u->output = json_integer_value(json_object_get(usage, "completion_tokens"));
	u->cached = json_integer_value(
		json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
	u->reasoning = json_integer_value(json_object_get(
		json_object_get(usage, "completion_tokens_details"), "reasoning_tokens"));
	u->cache_write = 0;
}

static const char *norm_finish(const char *f)
{
	if (strcmp(f, "stop") == 0)
		return "stop";
	if (strcmp(f, "tool_calls") == 0 || strcmp(f, "function_call") == 0)
		return "tool_calls";
	if (strcmp(f, "length") == 0)
		return "length";
	return "other";
}

static void set_finish(model_acc *a, const json_t *f)
{
	if (json_is_string(f))
		snprintf(a->finish, sizeof a->finish, "%s", json_string_value(f));
}

static void top_fields(model_acc *a, const json_t *j)
{
	const char *model = json_string_value(json_object_get(j, "model"));
	if (model != NULL && model[0] != '\0' && a->model == NULL)
		model_acc_set(&a->model, model);
	const char *id = json_string_value(json_object_get(j, "id"));
	if (id != NULL && a->id == NULL)
		model_acc_set(&a->id, id);
	const json_t *usage = json_object_get(j, "usage");
	if (json_is_object(usage)) {
		model_openai_usage(usage, &a->usage);
		a->got_usage = true;
	}
}

static void parse_whole(const char *body, size_t len, const model_shape *shape,
			model_parsed *out)
{
	model_acc a = {0};
	json_t *j = model_whole_json(body, len, out);
	if (j == NULL)
		goto out;
	const json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
	const json_t *msg = json_object_get(choice, "message");
	if (!json_is_object(msg)) {
		out->kind = MODEL_PARSE_MALFORMED;
		snprintf(out->why, sizeof out->why, "no choices[0].message in the body");
		goto out;
	}
	top_fields(&a, j);
	const char *text = json_string_value(json_object_get(msg, "content"));
	if (text != NULL && rein_buf_puts(&a.text, text) != REIN_OK)
		goto nomem;
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(msg, "tool_calls"), i, c) {
		model_call_acc *call = model_acc_call(&a, i);
		if (call == NULL)
			break;
		const json_t *fn = json_object_get(c, "function");
		model_acc_set(&call->id, json_string_value(json_object_get(c, "id")));
		model_acc_set(&call->name, json_string_value(json_object_get(fn, "name")));
		const json_t *args = json_object_get(fn, "arguments");
		if (json_is_string(args)) {
			if (rein_buf_append(&call->args, json_string_value(args),
					    json_string_length(args)) != REIN_OK)
				goto nomem;
		} else if (json_is_object(args)) { /* some servers send the object itself */
			call->input = json_incref((json_t *)args);
		}
	}
	set_finish(&a, json_object_get(choice, "finish_reason"));
	model_whole_done(&a, shape, norm_finish(a.finish), out);
	goto out;
nomem:
	model_whole_nomem(out);
out:
	json_decref(j);
	model_acc_free(&a);
}

typedef model_stream stream_state;

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
	stream_state *st = ud;
	if (st->done)
		return 0; /* nothing counts after [DONE] */
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		st->done = true;
		return 0;
	}
	rein_err je = {0};
	json_t *j = rein_json_parse(data, len, &je);
	if (!json_is_object(j)) {
		st->out->kind = MODEL_PARSE_MALFORMED;
		snprintf(st->out->why, sizeof st->out->why, "a stream chunk is not a JSON object: %.400s",
			 j ? "(not an object)" : je.msg);
		goto fail;
	}
	if (model_error_body(data, len, st->out->why, sizeof st->out->why, st->out->err_type,
			     sizeof st->out->err_type)) {
		st->out->kind = MODEL_PARSE_ERROR;
		st->out->transient = model_error_type_transient(st->out->err_type);
		goto fail;
	}
	top_fields(&st->acc, j);
	size_t i;
	const json_t *choice;
	json_array_foreach(json_object_get(j, "choices"), i, choice) {
		const json_t *idx = json_object_get(choice, "index");
		if (idx != NULL && json_integer_value(idx) != 0)
			continue; /* we ask for one choice; ignore others */
		const json_t *delta = json_object_get(choice, "delta");
		const json_t *content = json_object_get(delta, "content");
		if (json_is_string(content) &&
		    rein_buf_append(&st->acc.text, json_string_value(content),
				    json_string_length(content)) != REIN_OK)
			goto nomem;
		size_t k;
		const json_t *tc;
		json_array_foreach(json_object_get(delta, "tool_calls"), k, tc) {
			const json_t *ti = json_object_get(tc, "index");
			json_int_t index = json_is_integer(ti) ? json_integer_value(ti) : (json_int_t)k;
			model_call_acc *call = index >= 0 ? model_acc_call(&st->acc, (size_t)index)
							  : NULL;
			if (call == NULL) {
				st->out->kind = MODEL_PARSE_MALFORMED;
				snprintf(st->out->why, sizeof st->out->why,
					 "a tool call delta has index %lld", (long long)index);
				goto fail;
			}
			const char *id = json_string_value(json_object_get(tc, "id"));
			if (id != NULL && id[0] != '\0')
				model_acc_set(&call->id, id);
			const json_t *fn = json_object_get(tc, "function");
			const char *name = json_string_value(json_object_get(fn, "name"));
			if (name != NULL && name[0] != '\0' && call->name == NULL)
				model_acc_set(&call->name, name);
			const json_t *args = json_object_get(fn, "arguments");
			if (json_is_string(args) &&
			    rein_buf_append(&call->args, json_string_value(args),
					    json_string_length(args)) != REIN_OK)
				goto nomem;
		}
		set_finish(&st->acc, json_object_get(choice, "finish_reason"));
	}
	json_decref(j);
	return 0;
nomem:
	st->out->kind = MODEL_PARSE_MALFORMED;
	snprintf(st->out->why, sizeof st->out->why, "out of memory reading the stream");
fail:
	json_decref(j);
	st->failed = true;
	return 1;
}

void model_openai_parse(const char *body, size_t len, bool stream, const model_shape *shape,
			model_parsed *out)
{
	assert(out != NULL);
	memset(out, 0, sizeof *out);
	if (body == NULL)
		body = "";
	if (!stream || model_looks_json(body, len)) {
		parse_whole(body, len, shape, out);
		return;
	}
	model_parse_stream(body, len, shape, out, on_event, norm_finish, "data: [DONE]");
}
