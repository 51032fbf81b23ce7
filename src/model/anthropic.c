/*
 * The Anthropic messages protocol: rendering a normalized request as a
 * /v1/messages body (tool results become user turns of tool_result blocks,
 * consecutive turns of one role are merged, structured output is a forced
 * tool) and reading a message back, whole or as a stream of events whose
 * tool inputs arrive as input_json_delta fragments. A stream is complete only
 * at its message_stop event.
 */
#include <assert.h>
#include <string.h>

#include "model_int.h"

#define DEFAULT_MAX_TOKENS 4096

/* ---- rendering ---------------------------------------------------------- */

/* Appends blocks as a turn of role, merged into the last turn when it has
 * the same role. Steals blocks. */
static int add_turn(json_t *msgs, const char *role, json_t *blocks)
{
	if (blocks == NULL)
		return REIN_ENOMEM;
	if (json_array_size(blocks) == 0) {
		json_decref(blocks);
		return REIN_OK;
	}
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	if (last != NULL &&
	    strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
		int rc = json_array_extend(json_object_get(last, "content"), blocks);
		json_decref(blocks);
		return rc == 0 ? REIN_OK : REIN_ENOMEM;
	}
	json_t *turn = json_pack("{s:s,s:o}", "role", role, "content", blocks);
	return json_array_append_new(msgs, turn) == 0 ? REIN_OK : REIN_ENOMEM;
}

static json_t *tool_use_input(const json_t *call)
{
	const json_t *args = json_object_get(call, "arguments");
	if (json_is_object(args))
		return json_incref((json_t *)args);
	/* arguments_raw that did not parse: the protocol needs an object */
	const char *raw = json_string_value(json_object_get(call, "arguments_raw"));
	json_t *j = raw ? json_loads(raw, JSON_ALLOW_NUL, NULL) : NULL;
	if (json_is_object(j))
		return j;
	json_decref(j);
	return json_object();
}

static json_t *render_blocks(const json_t *m, const char **role)
{
	const char *r = json_string_value(json_object_get(m, "role"));
	const char *content = json_string_value(json_object_get(m, "content"));
	json_t *blocks = json_array();
	if (blocks == NULL)
		return NULL;
	if (strcmp(r, "tool") == 0) {
		*role = "user";
		json_t *b = json_pack("{s:s,s:O,s:s}", "type", "tool_result", "tool_use_id",
				      json_object_get(m, "tool_call_id"), "content",
				      content ? content : "");
		if (b != NULL && json_is_true(json_object_get(m, "is_error")))
			json_object_set_new(b, "is_error", json_true());
		if (json_array_append_new(blocks, b) != 0)
			goto fail;
		return blocks;
	}
	*role = r;
	if (content != NULL && content[0] != '\0' &&
	    json_array_append_new(blocks, json_pack("{s:s,s:s}", "type", "text", "text",
						    content)) != 0)
		goto fail;
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(m, "tool_calls"), i, c) {
		json_t *b = json_pack("{s:s,s:O,s:O,s:o}", "type", "tool_use", "id",
				      json_object_get(c, "id"), "name", json_object_get(c, "name"),
				      "input", tool_use_input(c));
		if (json_array_append_new(blocks, b) != 0)
			goto fail;
	}
	return blocks;
fail:
	json_decref(blocks);
	return NULL;
}

static bool is_object_schema(const json_t *s)
{
	const char *type = json_string_value(json_object_get(s, "type"));
	return json_is_object(s) && (type ? strcmp(type, "object") == 0
					  : json_object_get(s, "properties") != NULL);
}

int model_anthropic_render(const json_t *req, const model_wire *w, json_t **body,
			   model_shape *shape, rein_err *err)
{
	assert(req != NULL && w != NULL && body != NULL && shape != NULL);
	memset(shape, 0, sizeof *shape);
	json_int_t max = json_integer_value(json_object_get(req, "max_tokens"));
	if (max <= 0)
		max = w->max_tokens > 0 ? w->max_tokens : DEFAULT_MAX_TOKENS;
	json_t *b = json_pack("{s:O,s:I,s:[]}", "model", json_object_get(req, "model"),
			      "max_tokens", max, "messages");
	if (b == NULL)
		goto nomem;
	json_t *system = json_object_get(req, "system");
	if (system != NULL && json_object_set(b, "system", system) != 0)
		goto nomem;
	json_t *msgs = json_object_get(b, "messages");
	size_t i;
	const json_t *m;
	json_array_foreach(json_object_get(req, "messages"), i, m) {
		const char *role = NULL;
		json_t *blocks = render_blocks(m, &role);
		if (add_turn(msgs, role, blocks) != REIN_OK)
			goto nomem;
	}
	json_t *ts = json_array();
	if (ts == NULL)
		goto nomem;
	const json_t *t;
	json_array_foreach(json_object_get(req, "tools"), i, t) {
		json_t *one = json_pack("{s:O,s:O}", "name", json_object_get(t, "name"),
					"input_schema", json_object_get(t, "parameters"));
		json_t *d = json_object_get(t, "description");
		if (one != NULL && d != NULL)
			json_object_set(one, "description", d);
		if (json_array_append_new(ts, one) != 0) {
			json_decref(ts);
			goto nomem;
		}
	}
	const json_t *schema = json_object_get(req, "output_schema");
	if (schema != NULL) {
		const char *name = json_string_value(json_object_get(req, "output_name"));
		shape->output_tool = name ? name : "final_answer";
		shape->output_wrapped = !is_object_schema(schema);
		json_t *input_schema =
			shape->output_wrapped
				? json_pack("{s:s,s:{s:O},s:[s]}", "type", "object", "properties",
					    "value", schema, "required", "value")
				: json_incref((json_t *)schema);
		json_t *one = json_pack("{s:s,s:s,s:o}", "name", shape->output_tool, "description",
					"Give the final answer by calling this tool; its input is "
					"the answer.",
					"input_schema", input_schema);
		if (json_array_append_new(ts, one) != 0 ||
		    json_object_set_new(b, "tool_choice",
					json_pack("{s:s,s:s}", "type", "tool", "name",
						  shape->output_tool)) != 0) {
			json_decref(ts);
			goto nomem;
		}
	}
	if (json_array_size(ts) > 0) {
		if (json_object_set_new(b, "tools", ts) != 0)
			goto nomem;
	} else {
		json_decref(ts);
	}
	json_t *temp = json_object_get(req, "temperature");
	if (temp != NULL && json_object_set(b, "temperature", temp) != 0)
		goto nomem;
	if (json_is_true(json_object_get(req, "stream")) &&
	    json_object_set_new(b, "stream", json_true()) != 0)
		goto nomem;
	*body = b;
	return REIN_OK;
nomem:
	json_decref(b);
	return rein_err_set(err, REIN_ENOMEM, "out of memory rendering the request");
}

/* ---- reading ------------------------------------------------------------ */

void model_anthropic_usage(const json_t *usage, rein_model_usage *u)
{
	if (!json_is_object(usage))
		return;
	int64_t uncached = u->input - u->cached - u->cache_write;
	const json_t *v;
	if ((v = json_object_get(usage, "input_tokens")) && json_is_integer(v))
		uncached = json_integer_value(v);
	if ((v = json_object_get(usage, "cache_read_input_tokens")) && json_is_integer(v))
		u->cached = json_integer_value(v);
	if ((v = json_object_get(usage, "cache_creation_input_tokens")) && json_is_integer(v))
		u->cache_write = json_integer_value(v);
	if ((v = json_object_get(usage, "output_tokens")) && json_is_integer(v))
		u->output = json_integer_value(v);
	u->input = uncached + u->cached + u->cache_write;
}

static const char *norm_stop(const char *s)
{
	if (strcmp(s, "end_turn") == 0 || strcmp(s, "stop_sequence") == 0)
		return "stop";
	if (strcmp(s, "tool_use") == 0)
		return "tool_calls";
	if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
		return "length";
	return "other";
}

static void set_stop(model_acc *a, const json_t *s)
{
	if (json_is_string(s))
		snprintf(a->finish, sizeof a->finish, "%s", json_string_value(s));
}

static void message_fields(model_acc *a, const json_t *msg)
{
	const char *model = json_string_value(json_object_get(msg, "model"));
	if (model != NULL && model[0] != '\0')
		model_acc_set(&a->model, model);
	const char *id = json_string_value(json_object_get(msg, "id"));
	if (id != NULL)
		model_acc_set(&a->id, id);
	const json_t *usage = json_object_get(msg, "usage");
	if (json_is_object(usage)) {
		model_anthropic_usage(usage, &a->usage);
		a->got_usage = true;
	}
	set_stop(a, json_object_get(msg, "stop_reason"));
}

static void parse_whole(const char *body, size_t len, const model_shape *shape,
			model_parsed *out)
{
	model_acc a = {0};
	json_t *j = model_whole_json(body, len, out);
	if (j == NULL)
		goto out;
	const json_t *content = json_object_get(j, "content");
	if (!json_is_array(content)) {
		out->kind = MODEL_PARSE_MALFORMED;
		snprintf(out->why, sizeof out->why, "no content array in the message");
		goto out;
	}
	message_fields(&a, j);
	size_t i;
	const json_t *blk;
	json_array_foreach(content, i, blk) {
		const char *type = json_string_value(json_object_get(blk, "type"));
		if (type == NULL)
			continue;
		if (strcmp(type, "text") == 0) {
			const json_t *t = json_object_get(blk, "text");
			if (json_is_string(t) && rein_buf_append(&a.text, json_string_value(t),
								 json_string_length(t)) != REIN_OK)
				goto nomem;
		} else if (strcmp(type, "tool_use") == 0) {
			model_call_acc *call = model_acc_call(&a, i);
			if (call == NULL)
				break;
			model_acc_set(&call->id, json_string_value(json_object_get(blk, "id")));
			model_acc_set(&call->name, json_string_value(json_object_get(blk, "name")));
			const json_t *input = json_object_get(blk, "input");
			if (json_is_string(input)) { /* not the protocol, but say what came */
				if (rein_buf_append(&call->args, json_string_value(input),
						    json_string_length(input)) != REIN_OK)
					goto nomem;
			} else if (json_is_object(input)) {
				call->input = json_incref((json_t *)input);
			} else if (input != NULL) {
				char *t = rein_json_dump(input);
				int rc = t ? rein_buf_puts(&call->args, t) : REIN_ENOMEM;
				rein_free(t);
				if (rc != REIN_OK)
					goto nomem;
			}
		}
	}
	model_whole_done(&a, shape, norm_stop(a.finish), out);
	goto out;
nomem:
	model_whole_nomem(out);
out:
	json_decref(j);
	model_acc_free(&a);
}

typedef model_stream stream_state;

static int bad(stream_state *st, const char *why)
{
	st->out->kind = MODEL_PARSE_MALFORMED;
	snprintf(st->out->why, sizeof st->out->why, "%s", why);
	st->failed = true;
	return 1;
}

/* The tool call of a content block, by the block's index. */
static model_call_acc *block_call(stream_state *st, const json_t *ev)
{
	const json_t *idx = json_object_get(ev, "index");
	if (!json_is_integer(idx) || json_integer_value(idx) < 0)
		return NULL;
	return model_acc_call(&st->acc, (size_t)json_integer_value(idx));
}

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
	stream_state *st = ud;
	if (st->done)
		return 0;
	json_error_t je;
	json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, &je);
	int rc = 0;
	if (!json_is_object(j)) {
		char why[256];
		snprintf(why, sizeof why, "an event's data is not a JSON object: %s",
			 j ? "(not an object)" : je.text);
		rc = bad(st, why);
		goto out;
	}
	const char *type = json_string_value(json_object_get(j, "type"));
	if (type == NULL)
		type = event;
	if (strcmp(type, "error") == 0) {
		if (!model_error_body(data, len, st->out->why, sizeof st->out->why,
				      st->out->err_type, sizeof st->out->err_type))
			snprintf(st->out->why, sizeof st->out->why, "an error event");
		st->out->kind = MODEL_PARSE_ERROR;
		st->out->transient = model_error_type_transient(st->out->err_type);
		st->failed = true;
		rc = 1;
	} else if (strcmp(type, "message_start") == 0) {
		st->started = true;
		message_fields(&st->acc, json_object_get(j, "message"));
	} else if (strcmp(type, "content_block_start") == 0) {
		const json_t *blk = json_object_get(j, "content_block");
		const char *bt = json_string_value(json_object_get(blk, "type"));
		if (bt != NULL && strcmp(bt, "tool_use") == 0) {
			model_call_acc *call = block_call(st, j);
			if (call == NULL) {
				rc = bad(st, "a tool_use block has no usable index");
				goto out;
			}
			model_acc_set(&call->id, json_string_value(json_object_get(blk, "id")));
			model_acc_set(&call->name, json_string_value(json_object_get(blk, "name")));
		} else if (bt != NULL && strcmp(bt, "text") == 0) {
			const json_t *t = json_object_get(blk, "text");
			if (json_is_string(t) &&
			    rein_buf_append(&st->acc.text, json_string_value(t),
					    json_string_length(t)) != REIN_OK)
				rc = bad(st, "out of memory");
		}
	} else if (strcmp(type, "content_block_delta") == 0) {
		json_t *d = json_object_get(j, "delta");
		const char *dt = json_string_value(json_object_get(d, "type"));
		if (dt != NULL && strcmp(dt, "text_delta") == 0) {
			const json_t *t = json_object_get(d, "text");
			if (json_is_string(t) &&
			    rein_buf_append(&st->acc.text, json_string_value(t),
					    json_string_length(t)) != REIN_OK)
				rc = bad(st, "out of memory");
		} else if (dt != NULL && strcmp(dt, "input_json_delta") == 0) {
			model_call_acc *call = block_call(st, j);
			const json_t *pj = json_object_get(d, "partial_json");
			if (call == NULL) {
				rc = bad(st, "an input_json_delta has no usable index");
				goto out;
			}
			if (json_is_string(pj) &&
			    rein_buf_append(&call->args, json_string_value(pj),
					    json_string_length(pj)) != REIN_OK)
				rc = bad(st, "out of memory");
		}
		/* thinking_delta, signature_delta: not part of the answer */
	} else if (strcmp(type, "message_delta") == 0) {
		set_stop(&st->acc, json_object_get(json_object_get(j, "delta"), "stop_reason"));
		const json_t *usage = json_object_get(j, "usage");
		if (json_is_object(usage)) {
			model_anthropic_usage(usage, &st->acc.usage);
			st->acc.got_usage = true;
		}
	} else if (strcmp(type, "message_stop") == 0) {
		st->done = true;
	}
	/* ping, content_block_stop and unknown events: nothing to keep */
out:
	json_decref(j);
	return rc;
}

void model_anthropic_parse(const char *body, size_t len, bool stream,
			   const model_shape *shape, model_parsed *out)
{
	assert(out != NULL);
	memset(out, 0, sizeof *out);
	if (body == NULL)
		body = "";
	if (!stream || model_looks_json(body, len)) {
		parse_whole(body, len, shape, out);
		return;
	}
	model_parse_stream(body, len, shape, out, on_event, norm_stop, "message_stop");
}
