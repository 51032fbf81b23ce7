/*
 * The loopback model server (build/asan/tools/modelserver, or
 * $REIN_MODELSERVER) seen from a plain HTTP client: each test posts a script
 * to /control/script and checks the protocol renderings with libcurl, parsing
 * the SSE streams and re-joining the deltas as a provider client would.
 */
#include <signal.h>
#include <strings.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include "testlib.h"

static test_server srv;

typedef struct res {
	long status;
	CURLcode rc;
	rein_buf body, head;
} res;

static void res_free(res *r)
{
	rein_buf_free(&r->body);
	rein_buf_free(&r->head);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	rein_buf_append(ud, p, size * n);
	return size * n;
}

/* One call; hdrs is a NULL-terminated list of "Name: value" lines. */
static void call(const char *method, const char *path, const char *const *hdrs,
		 const char *body, res *out)
{
	memset(out, 0, sizeof *out);
	char url[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.port, path);
	CURL *h = curl_easy_init();
	assert_non_null(h);
	struct curl_slist *sl = NULL;
	for (size_t i = 0; hdrs && hdrs[i]; i++)
		sl = curl_slist_append(sl, hdrs[i]);
	sl = curl_slist_append(sl, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &out->head);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	out->rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(sl);
	curl_easy_cleanup(h);
	if (out->body.p == NULL)
		rein_buf_puts(&out->body, "");
	if (out->head.p == NULL)
		rein_buf_puts(&out->head, "");
}

static const char *const OA_HDRS[] = {"Authorization: Bearer sk-test-secret", NULL};
static const char *const AN_HDRS[] = {"x-api-key: sk-ant-secret",
				      "anthropic-version: 2023-06-01", NULL};

static void openai(const char *body, res *out)
{
	call("POST", "/v1/chat/completions", OA_HDRS, body, out);
}

static void anthropic(const char *body, res *out)
{
	call("POST", "/v1/messages", AN_HDRS, body, out);
}

static void set_script(const char *script)
{
	res r;
	call("POST", "/control/script", NULL, script, &r);
	if (r.status != 200)
		fprintf(stderr, "script: %s\n", r.body.p);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

/* A response header's value (case-insensitive name), or NULL; caller frees. */
static char *header_value(const res *r, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = r->head.p; l && *l;) {
		const char *eol = strstr(l, "\r\n");
		if (eol == NULL)
			break;
		if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
			const char *v = l + n + 1;
			while (*v == ' ')
				v++;
			return strndup(v, (size_t)(eol - v));
		}
		l = eol + 2;
	}
	return NULL;
}

/* Parses an SSE body into [{event, data}] (data parsed as JSON when it is). */
static json_t *sse_parse(const char *body)
{
	json_t *out = json_array();
	const char *p = body;
	while (*p) {
		const char *end = strstr(p, "\n\n");
		size_t blen = end ? (size_t)(end - p) : strlen(p);
		char *block = strndup(p, blen);
		json_t *ev = json_object();
		char *save = NULL;
		for (char *line = strtok_r(block, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "event: ", 7) == 0) {
				json_object_set_new(ev, "event", json_string(line + 7));
			} else if (strncmp(line, "data: ", 6) == 0) {
				json_t *d = json_loads(line + 6, JSON_DECODE_ANY, NULL);
				json_object_set_new(ev, "data", d ? d : json_string(line + 6));
			}
		}
		free(block);
		if (json_object_size(ev) > 0)
			json_array_append(out, ev);
		json_decref(ev);
		if (end == NULL)
			break;
		p = end + 2;
	}
	return out;
}

static json_t *body_json(const res *r)
{
	json_t *j = json_loads(r->body.p, 0, NULL);
	if (j == NULL)
		fprintf(stderr, "not JSON: %s\n", r->body.p);
	assert_non_null(j);
	return j;
}

/* ---- server ------------------------------------------------------------ */

static int server_start(void **state)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return test_server_up(&srv, "modelserver");
}

static int server_stop(void **state)
{
	test_server_down(&srv);
	curl_global_cleanup();
	return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_openai_tool_call(void **state)
{
	set_script("{\"turns\":[{\"tool_calls\":[{\"name\":\"lookup\",\"arguments\":"
		   "{\"city\":\"Paris\",\"n\":2}}],\"usage\":{\"input\":50,\"output\":9,"
		   "\"cached\":32,\"reasoning\":4}}]}");
	res r;
	openai("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
	       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\",\"strict\":true,"
	       "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"auto\"}",
	       &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
	assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-4o-mini");
	json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
	json_t *msg = json_object_get(ch, "message");
	assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
	assert_true(json_is_null(json_object_get(msg, "content")));
	json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
	assert_string_equal(json_string_value(json_object_get(tc, "id")), "call_1");
	assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
	json_t *fn = json_object_get(tc, "function");
	assert_string_equal(json_string_value(json_object_get(fn, "name")), "lookup");
	/* arguments is a JSON string, not an object */
	const char *args = json_string_value(json_object_get(fn, "arguments"));
	assert_non_null(args);
	json_t *a = J(args);
	assert_json_eq(a, "{\"city\":\"Paris\",\"n\":2}");
	json_decref(a);
	assert_json_eq(json_object_get(j, "usage"),
		       "{\"prompt_tokens\":50,\"completion_tokens\":9,\"total_tokens\":59,"
		       "\"prompt_tokens_details\":{\"cached_tokens\":32,\"audio_tokens\":0},"
		       "\"completion_tokens_details\":{\"reasoning_tokens\":4,\"audio_tokens\":0,"
		       "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}");
	json_decref(j);
	res_free(&r);
}

/* Re-joins an OpenAI stream: content, and tool calls by index. */
static void oa_join(json_t *events, rein_buf *content, json_t *calls, json_t *arg_order,
		    json_t **usage, const char **finish)
{
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		json_t *d = json_object_get(ev, "data");
		if (json_is_string(d))
			continue; /* [DONE] */
		assert_string_equal(json_string_value(json_object_get(d, "object")),
				    "chat.completion.chunk");
		json_t *u = json_object_get(d, "usage");
		if (json_is_object(u))
			*usage = u;
		json_t *ch = json_array_get(json_object_get(d, "choices"), 0);
		if (ch == NULL)
			continue;
		const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
		if (fr)
			*finish = fr;
		json_t *delta = json_object_get(ch, "delta");
		const char *c = json_string_value(json_object_get(delta, "content"));
		if (c)
			rein_buf_puts(content, c);
		size_t k;
		json_t *tc;
		json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
		{
			json_int_t idx = json_integer_value(json_object_get(tc, "index"));
			while ((json_int_t)json_array_size(calls) <= idx)
				json_array_append_new(calls, json_pack("{s:s,s:s,s:s}", "id", "",
								       "name", "", "arguments", ""));
			json_t *acc = json_array_get(calls, (size_t)idx);
			const char *id = json_string_value(json_object_get(tc, "id"));
			if (id)
				json_object_set_new(acc, "id", json_string(id));
			json_t *fn = json_object_get(tc, "function");
			const char *name = json_string_value(json_object_get(fn, "name"));
			if (name)
				json_object_set_new(acc, "name", json_string(name));
			const char *frag = json_string_value(json_object_get(fn, "arguments"));
			if (frag && *frag) {
				char *joined = rein_sprintf(
				    "%s%s", json_string_value(json_object_get(acc, "arguments")),
				    frag);
				json_object_set_new(acc, "arguments", json_string(joined));
				rein_free(joined);
				json_array_append_new(arg_order, json_integer(idx));
			}
		}
	}
}

static void test_openai_stream_two_tools(void **state)
{
	set_script("{\"turns\":["
		   "{\"text\":\"Let me check both.\",\"tool_calls\":["
		   "{\"name\":\"lookup\",\"arguments\":{\"city\":\"Paris\",\"units\":\"metric\"}},"
		   "{\"name\":\"calc\",\"arguments\":{\"expr\":\"6*7\"}}]},"
		   "{\"text\":\"plain\"}]}");
	res r;
	openai("{\"model\":\"gpt-4o\",\"messages\":[],\"stream\":true,"
	       "\"stream_options\":{\"include_usage\":true}}",
	       &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	char *ct = header_value(&r, "content-type");
	assert_non_null(ct);
	assert_non_null(strstr(ct, "text/event-stream"));
	free(ct);
	json_t *events = sse_parse(r.body.p);
	size_t n = json_array_size(events);
	assert_true(n > 8);
	assert_string_equal(json_string_value(json_object_get(json_array_get(events, n - 1), "data")),
			    "[DONE]");
	rein_buf content = {0};
	json_t *calls = json_array(), *order = json_array(), *usage = NULL;
	const char *finish = NULL;
	oa_join(events, &content, calls, order, &usage, &finish);
	assert_string_equal(content.p, "Let me check both.");
	assert_string_equal(finish, "tool_calls");
	assert_int_equal(json_array_size(calls), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 0), "id")),
			    "call_1");
	assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 1), "id")),
			    "call_2");
	assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 1), "name")),
			    "calc");
	json_t *a0 = J(json_string_value(json_object_get(json_array_get(calls, 0), "arguments")));
	json_t *a1 = J(json_string_value(json_object_get(json_array_get(calls, 1), "arguments")));
	assert_json_eq(a0, "{\"city\":\"Paris\",\"units\":\"metric\"}");
	assert_json_eq(a1, "{\"expr\":\"6*7\"}");
	/* several fragments each, interleaved: index 1 comes before index 0 is done */
	assert_true(json_array_size(order) >= 4);
	assert_int_equal(json_integer_value(json_array_get(order, 0)), 0);
	assert_int_equal(json_integer_value(json_array_get(order, 1)), 1);
	assert_int_equal(json_integer_value(json_array_get(order, 2)), 0);
	/* the usage chunk: choices [] and the counts */
	assert_non_null(usage);
	json_t *last = json_object_get(json_array_get(events, n - 2), "data");
	assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
	assert_true(json_integer_value(json_object_get(usage, "total_tokens")) > 0);
	json_decref(a0);
	json_decref(a1);
	json_decref(calls);
	json_decref(order);
	json_decref(events);
	rein_buf_free(&content);
	res_free(&r);

	/* without include_usage there is no usage at all */
	openai("{\"model\":\"gpt-4o\",\"messages\":[],\"stream\":true}", &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body.p, "\"usage\""));
	assert_non_null(strstr(r.body.p, "data: [DONE]\n\n"));
	res_free(&r);
}

static void test_anthropic_text_usage(void **state)
{
	set_script("{\"turns\":[{\"text\":\"Bonjour.\",\"model\":\"claude-sonnet-4-20250514\","
		   "\"usage\":{\"input\":120,\"output\":30,\"cached\":100}}]}");
	res r;
	anthropic("{\"model\":\"claude-sonnet-4\",\"max_tokens\":256,\"messages\":[{\"role\":"
		  "\"user\",\"content\":\"hi\"}]}",
		  &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	assert_json_eq(j, "{\"id\":\"msg_rein1\",\"type\":\"message\",\"role\":\"assistant\","
			  "\"model\":\"claude-sonnet-4-20250514\","
			  "\"content\":[{\"type\":\"text\",\"text\":\"Bonjour.\"}],"
			  "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
			  "\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":0,"
			  "\"cache_read_input_tokens\":100,\"output_tokens\":30}}");
	json_decref(j);
	res_free(&r);
}

static void test_anthropic_stream_json_delta(void **state)
{
	set_script("{\"turns\":["
		   "{\"text\":\"Checking\",\"tool_calls\":[{\"name\":\"lookup\",\"arguments\":"
		   "{\"city\":\"Zürich\",\"days\":[1,2,3]}}]},"
		   "{\"tool_calls\":[{\"name\":\"broken\",\"arguments_raw\":\"{not json at all\"}]}]}");
	res r;
	anthropic("{\"model\":\"claude-x\",\"max_tokens\":64,\"messages\":[],\"stream\":true}", &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	json_t *events = sse_parse(r.body.p);
	size_t n = json_array_size(events), i;
	json_t *ev;
	assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "event")),
			    "message_start");
	assert_string_equal(json_string_value(json_object_get(json_array_get(events, n - 1), "event")),
			    "message_stop");
	rein_buf text = {0}, args = {0};
	const char *stop = NULL, *tool_id = NULL;
	int json_deltas = 0;
	json_array_foreach(events, i, ev)
	{
		const char *name = json_string_value(json_object_get(ev, "event"));
		json_t *d = json_object_get(ev, "data");
		/* the event line names the data's type */
		assert_string_equal(name, json_string_value(json_object_get(d, "type")));
		if (strcmp(name, "content_block_start") == 0) {
			json_t *cb = json_object_get(d, "content_block");
			if (strcmp(json_string_value(json_object_get(cb, "type")), "tool_use") == 0) {
				tool_id = json_string_value(json_object_get(cb, "id"));
				assert_int_equal(json_integer_value(json_object_get(d, "index")), 1);
			}
		} else if (strcmp(name, "content_block_delta") == 0) {
			json_t *delta = json_object_get(d, "delta");
			const char *t = json_string_value(json_object_get(delta, "type"));
			if (strcmp(t, "text_delta") == 0) {
				rein_buf_puts(&text, json_string_value(json_object_get(delta, "text")));
			} else {
				assert_string_equal(t, "input_json_delta");
				rein_buf_puts(&args, json_string_value(
							 json_object_get(delta, "partial_json")));
				json_deltas++;
			}
		} else if (strcmp(name, "message_delta") == 0) {
			stop = json_string_value(json_object_get(json_object_get(d, "delta"),
								 "stop_reason"));
			assert_true(json_integer_value(json_object_get(
					json_object_get(d, "usage"), "output_tokens")) > 0);
		}
	}
	assert_string_equal(text.p, "Checking");
	assert_string_equal(tool_id, "toolu_1");
	assert_true(json_deltas > 2);
	json_t *a = J(args.p);
	assert_json_eq(a, "{\"city\":\"Zürich\",\"days\":[1,2,3]}");
	json_decref(a);
	assert_string_equal(stop, "tool_use");
	json_decref(events);
	rein_buf_free(&text);
	rein_buf_free(&args);
	res_free(&r);

	/* arguments_raw: the fragments re-join to exactly those bytes */
	anthropic("{\"model\":\"claude-x\",\"max_tokens\":64,\"messages\":[],\"stream\":true}", &r);
	events = sse_parse(r.body.p);
	rein_buf raw = {0};
	json_array_foreach(events, i, ev)
	{
		json_t *delta = json_object_get(json_object_get(ev, "data"), "delta");
		const char *pj = json_string_value(json_object_get(delta, "partial_json"));
		if (pj)
			rein_buf_puts(&raw, pj);
	}
	assert_string_equal(raw.p, "{not json at all");
	rein_buf_free(&raw);
	json_decref(events);
	res_free(&r);
}

static void test_errors_retry_after(void **state)
{
	set_script("{\"turns\":[{\"error\":{\"status\":429,\"retry_after\":2}},"
		   "{\"error\":{\"status\":429,\"retry_after\":7}},"
		   "{\"error\":{\"status\":529}}, {\"error\":{\"status\":500}}]}");
	res r;
	openai("{\"model\":\"gpt-4o\",\"messages\":[]}", &r);
	assert_int_equal(r.status, 429);
	char *ra = header_value(&r, "retry-after");
	assert_non_null(ra);
	assert_string_equal(ra, "2");
	free(ra);
	json_t *j = body_json(&r);
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "code")), "rate_limit_exceeded");
	assert_non_null(json_string_value(json_object_get(e, "message")));
	json_decref(j);
	res_free(&r);

	anthropic("{\"model\":\"c\",\"max_tokens\":1,\"messages\":[],\"stream\":true}", &r);
	assert_int_equal(r.status, 429);
	ra = header_value(&r, "retry-after");
	assert_string_equal(ra, "7");
	free(ra);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
			    "rate_limit_error");
	json_decref(j);
	res_free(&r);

	anthropic("{\"model\":\"c\",\"max_tokens\":1,\"messages\":[]}", &r);
	assert_int_equal(r.status, 529);
	assert_non_null(strstr(r.body.p, "\"overloaded_error\""));
	res_free(&r);

	openai("{\"model\":\"gpt-4o\",\"messages\":[]}", &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(r.body.p, "\"server_error\""));
	res_free(&r);

	/* the script is exhausted */
	openai("{\"model\":\"gpt-4o\",\"messages\":[]}", &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(r.body.p, "script exhausted"));
	res_free(&r);
}

static void test_cut_stream(void **state)
{
	set_script("{\"turns\":[{\"text\":\"a fairly long answer that streams\",\"cut_after\":3},"
		   "{\"text\":\"a fairly long answer\",\"cut_after\":2}]}");
	res r;
	anthropic("{\"model\":\"c\",\"max_tokens\":1,\"messages\":[],\"stream\":true}", &r);
	assert_int_equal(r.status, 200);
	assert_int_not_equal(r.rc, CURLE_OK); /* the chunked body never ends */
	json_t *events = sse_parse(r.body.p);
	assert_int_equal(json_array_size(events), 3);
	assert_null(strstr(r.body.p, "message_stop"));
	json_decref(events);
	res_free(&r);

	openai("{\"model\":\"g\",\"messages\":[],\"stream\":true}", &r);
	assert_int_equal(r.status, 200);
	assert_int_not_equal(r.rc, CURLE_OK);
	events = sse_parse(r.body.p);
	assert_int_equal(json_array_size(events), 2);
	assert_null(strstr(r.body.p, "[DONE]"));
	json_decref(events);
	res_free(&r);
}

static void test_checks_and_log(void **state)
{
	res r;
	call("POST", "/control/reset", NULL, "", &r);
	res_free(&r);
	set_script("{\"turns\":[{\"text\":\"hi\"}]}");
	/* refused without a key, without consuming the turn */
	call("POST", "/v1/messages", NULL, "{\"model\":\"c\",\"max_tokens\":1,\"messages\":[]}", &r);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(r.body.p, "authentication_error"));
	res_free(&r);
	call("POST", "/chat/completions", OA_HDRS, "{\"model\":\"g\",\"messages\":[]}", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);

	call("GET", "/control/requests", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *log = body_json(&r);
	assert_int_equal(json_array_size(log), 2);
	json_t *first = json_array_get(log, 0), *second = json_array_get(log, 1);
	assert_string_equal(json_string_value(json_object_get(second, "path")), "/chat/completions");
	json_t *h = json_object_get(second, "headers");
	assert_string_equal(json_string_value(json_object_get(h, "authorization")), "***");
	assert_string_equal(json_string_value(json_object_get(h, "content-type")),
			    "application/json");
	assert_json_eq(json_object_get(second, "body"), "{\"model\":\"g\",\"messages\":[]}");
	assert_string_equal(json_string_value(json_object_get(first, "path")), "/v1/messages");
	assert_null(strstr(r.body.p, "sk-test-secret"));
	json_decref(log);
	res_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_openai_tool_call),
	    cmocka_unit_test(test_openai_stream_two_tools),
	    cmocka_unit_test(test_anthropic_text_usage),
	    cmocka_unit_test(test_anthropic_stream_json_delta),
	    cmocka_unit_test(test_errors_retry_after),
	    cmocka_unit_test(test_cut_stream),
	    cmocka_unit_test(test_checks_and_log),
	};
	return cmocka_run_group_tests(tests, server_start, server_stop);
}
