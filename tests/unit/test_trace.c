/*
 * trace: events → spans as a pure function (derived ids, the tree, span
 * events, errors, a cancel, a purged payload, events out of order), the
 * OTLP/JSON encoding of its values, the exporter's configuration from the
 * environment, and every allocation failing in turn.
 */
#include "testlib.h"
#include "trace.h"

typedef struct ev {
	const char *type, *step, *payload;
} ev;

/* A tool step retried, given up with a fallback, the breaker opening; an
 * agent with a chat, a tool call and a refusal; a wait; a cancel. */
static const ev RUN[] = {
	{"run.started", NULL, "{\"input\":{},\"workflow\":\"wf\",\"version\":\"v1\"}"},
	{"tool.intent", "pay", "{\"tool\":\"refund\",\"key\":\"k1\",\"args\":{\"amount\":5}}"},
	{"tool.attempt", "pay", "{\"attempt\":1,\"outcome\":\"http_503\",\"error\":\"busy\",\"transient\":true,\"ambiguous\":false,\"status\":503}"},
	{"tool.backoff", "pay", "{\"attempt\":1,\"delay_ms\":20,\"due_at\":1020}"},
	{"tool.attempt", "pay", "{\"attempt\":2,\"outcome\":\"timeout\",\"error\":\"slow\",\"transient\":true,\"ambiguous\":false}"},
	{"breaker.opened", "pay", "{\"tool\":\"refund\",\"reason\":\"failures\",\"failures\":2}"},
	{"tool.fallback", "pay", "{\"kind\":\"value\",\"from\":\"refund\",\"result\":{\"ok\":false}}"},
	{"step.completed", "pay", "{\"out\":{\"ok\":false},\"fallback\":\"value\"}"},
	{"model.intent", "agent", "{\"tier\":\"t\",\"provider\":\"openai\",\"model\":\"m-1\",\"request_hash\":\"h\",\"estimate\":{},\"params\":{\"max_tokens\":9,\"temperature\":0.5},\"tools_hash\":\"x\"}"},
	{"model.call", "agent", "{\"tier\":\"t\",\"provider\":\"openai\",\"model\":\"m-1-2026\",\"request_hash\":\"h\",\"usage\":{\"input\":7,\"output\":3,\"cached\":2,\"reasoning\":1},\"cost_usd\":0.5,\"response\":{\"id\":\"r1\",\"finish_reason\":\"tool_calls\",\"text\":\"SECRET ANSWER\"}}"},
	{"tool.refused", "agent", "{\"call_id\":\"c0\",\"tool\":\"nope\",\"error\":\"no such tool\"}"},
	{"tool.intent", "agent", "{\"tool\":\"lookup\",\"key\":\"k2\",\"args\":{\"q\":\"SECRET ARG\"},\"call_id\":\"c1\"}"},
	{"tool.result", "agent", "{\"out\":{\"v\":\"SECRET RESULT\"},\"attempt\":1,\"status\":200}"},
	{"model.intent", "agent", "{\"tier\":\"t\",\"provider\":\"${env.P}\",\"model\":\"m-1\",\"request_hash\":\"h2\",\"estimate\":{},\"params\":{}}"},
	{"model.attempt", "agent", "{\"attempt\":1,\"outcome\":\"http_500\",\"error\":\"boom\",\"transient\":false}"},
	{"model.route", "agent", "{\"from\":\"t\",\"to\":\"u\",\"reason\":\"boom\"}"},
	{"model.intent", "agent", "{\"tier\":\"u\",\"model\":\"m-2\",\"request_hash\":\"h3\",\"estimate\":{},\"params\":{}}"},
	{"model.attempt", "agent", "{\"attempt\":1,\"outcome\":\"http_400\",\"error\":\"bad\",\"transient\":false}"},
	{"step.failed", "agent", "{\"error\":\"model tier 'u': bad\"}"},
	{"timer.scheduled", "pause", "{\"due_at\":5000}"},
	{"inbox.received", NULL, "{\"id\":\"i1\",\"type\":\"cancel\",\"at\":1,\"sender\":\"ops\"}"},
	{"run.ended", NULL, "{\"status\":\"cancelled\",\"reason\":\"cancelled by ops\"}"},
};
#define NRUN (sizeof RUN / sizeof *RUN)

static int build(const char *run, const ev *evs, size_t n, rein_trace **out)
{
	rein_trace *t = rein_trace_new(run);
	if (t == NULL)
		return REIN_ENOMEM;
	int rc = REIN_OK;
	for (size_t i = 0; i < n && rc == REIN_OK; i++) {
		rein_event_row r = {.run_id = run, .seq = (int64_t)i + 1, .type = evs[i].type,
				    .step = evs[i].step, .at = 1000 + 10 * (int64_t)i,
				    .payload = evs[i].payload};
		rein_err e = {0};
		rc = rein_trace_add(t, &r, &e);
		rein_err_clear(&e);
	}
	if (rc != REIN_OK) {
		rein_trace_free(t);
		return rc;
	}
	*out = t;
	return REIN_OK;
}

static const rein_span *find(const rein_trace *t, const char *name, int nth)
{
	size_t n;
	const rein_span *s = rein_trace_spans(t, &n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].name, name) == 0 && nth-- == 0)
			return &s[i];
	fail_msg("no span '%s'", name);
	return NULL;
}

static const char *attr_s(const rein_span *s, const char *k)
{
	return json_string_value(json_object_get(s->attrs, k));
}

static void test_tree(void **state)
{
	rein_trace *t = NULL;
	assert_int_equal(build("run_a", RUN, NRUN, &t), REIN_OK);
	size_t n;
	const rein_span *sp = rein_trace_spans(t, &n);
	assert_int_equal(n, 10);
	assert_true(rein_trace_ended(t));
	/* the run: cancelled is an error, told by the inbox event */
	assert_string_equal(sp[0].name, "invoke_workflow wf");
	assert_int_equal(sp[0].parent, -1);
	assert_int_equal(sp[0].status, REIN_STATUS_ERROR);
	assert_string_equal(attr_s(&sp[0], "error.type"), "cancelled");
	assert_string_equal(json_string_value(json_object_get(json_array_get(sp[0].events, 0), "name")),
			    "rein.inbox.received");
	assert_true(sp[0].cost_usd == 0.5 && sp[0].in_tokens == 7 && sp[0].retries == 1);
	/* the tool step and its call: attempts, backoff, breaker, fallback */
	const rein_span *pay = find(t, "step pay", 0), *refund = find(t, "execute_tool refund", 0);
	assert_int_equal(refund->parent, (int)(pay - sp));
	assert_int_equal(refund->kind, REIN_SPAN_INTERNAL);
	assert_int_equal(refund->status, REIN_STATUS_ERROR);
	assert_string_equal(attr_s(refund, "error.type"), "timeout");
	assert_int_equal(json_array_size(refund->events), 5);
	assert_string_equal(json_string_value(json_object_get(json_array_get(refund->events, 3), "name")),
			    "rein.breaker.opened");
	assert_int_equal(refund->retries, 1);
	assert_int_equal(pay->status, REIN_STATUS_UNSET);
	/* the agent: named so, two chats (the second failed and routed), a tool */
	const rein_span *ag = find(t, "invoke_agent agent", 0);
	assert_string_equal(attr_s(ag, "gen_ai.operation.name"), "invoke_agent");
	assert_int_equal(ag->status, REIN_STATUS_ERROR);
	assert_string_equal(attr_s(ag, "error.type"), "http_400");
	const rein_span *c1 = find(t, "chat m-1", 0), *c2 = find(t, "chat m-1", 1),
			*c3 = find(t, "chat m-2", 0);
	assert_int_equal(c1->kind, REIN_SPAN_CLIENT);
	assert_int_equal(c1->parent, (int)(ag - sp));
	assert_string_equal(attr_s(c1, "gen_ai.provider.name"), "openai");
	assert_string_equal(attr_s(c1, "gen_ai.response.model"), "m-1-2026");
	assert_string_equal(attr_s(c1, "gen_ai.response.id"), "r1");
	assert_int_equal(json_integer_value(json_object_get(c1->attrs, "gen_ai.usage.cache_read.input_tokens")), 2);
	assert_int_equal(json_integer_value(json_object_get(c1->attrs, "gen_ai.usage.reasoning.output_tokens")), 1);
	assert_int_equal(json_integer_value(json_object_get(c1->attrs, "gen_ai.request.max_tokens")), 9);
	assert_null(json_object_get(c2->attrs, "gen_ai.provider.name")); /* a template is not a name */
	assert_string_equal(attr_s(c2, "error.type"), "http_500");
	assert_int_equal(c3->status, REIN_STATUS_ERROR);
	const rein_span *lk = find(t, "execute_tool lookup", 0);
	assert_string_equal(attr_s(lk, "gen_ai.tool.call.id"), "c1");
	assert_int_equal(lk->status, REIN_STATUS_UNSET);
	/* the wait was cut short by the end */
	const rein_span *w = find(t, "wait pause", 0);
	assert_false(w->open);
	assert_int_equal(w->end_ms, 1000 + 10 * (int64_t)(NRUN - 1));
	/* no message content anywhere */
	json_t *req = NULL;
	const rein_trace *one = t;
	assert_int_equal(rein_otlp_encode(&one, 1, &req, NULL), REIN_OK);
	char *text = rein_json_dump(req);
	assert_null(strstr(text, "SECRET"));
	rein_free(text);
	json_decref(req);
	/* the terminal view marks the failures */
	rein_buf b = {0};
	assert_int_equal(rein_trace_render(t, &b), REIN_OK);
	if (getenv("SHOW")) fputs(b.p, stderr);
	assert_non_null(strstr(b.p, "├─ invoke_agent agent"));
	assert_non_null(strstr(b.p, "✗ FAILED http_400: model tier 'u': bad"));
	rein_buf_free(&b);
	rein_trace_free(t);
}

/* Governance: policy decisions on the calls they gated, approval waits
 * (a two-person grant with an edit, an alert and a refused token; a denial;
 * an expiry that escalates). The approval.* events are folded by name. */
/* PV: the policy_version field (jansson 2.14 crashes when an allocation
 * fails while it parses a 14-byte object key, so the allocation-fault test
 * names it otherwise). */
#define GOV_EVENTS(PV) { \
	{"run.started", NULL, "{\"workflow\":\"wf\",\"version\":\"v1\"}"}, \
	{"policy.decision", "a", "{\"tool\":\"look\",\"decision\":\"allow\",\"rules\":[\"r1\"],\"reasons\":[\"fine\"]," PV "}"}, \
	{"tool.intent", "a", "{\"tool\":\"look\",\"key\":\"k1\",\"args\":{},\"call_id\":\"c1\"}"}, \
	{"tool.result", "a", "{\"call_id\":\"c1\",\"out\":{}}"}, \
	{"policy.decision", "a", "{\"tool\":\"pay\",\"decision\":\"deny\",\"rules\":[\"r2\",\"r3\"],\"reasons\":[\"no\"]," PV "}"}, \
	{"tool.refused", "a", "{\"call_id\":\"c2\",\"tool\":\"pay\",\"error\":\"denied by policy\"}"}, \
	{"step.completed", "a", "{\"out\":{}}"}, \
	{"policy.decision", "b", "{\"tool\":\"pay\",\"decision\":\"approve\",\"rules\":[\"big\",\"r4\"],\"reasons\":[\"x\"]," PV "}"}, \
	{"approval.requested", "b", "{\"id\":\"ap1\",\"key\":\"k2\",\"tool\":\"pay\",\"args\":{\"amount\":50},\"risk\":\"high\",\"rules\":[\"big\"],\"need\":{\"count\":2,\"roles\":[]}}"}, \
	{"approval.alert", "b", "{\"id\":\"ap1\"}"}, \
	{"approval.refused", NULL, "{\"id\":\"ap1\",\"by\":\"eve\",\"reason\":\"forged token\"}"}, \
	{"approval.granted", "b", "{\"id\":\"ap1\",\"by\":\"ann\",\"roles\":[\"finance\"]}"}, \
	{"approval.granted", "b", "{\"id\":\"ap1\",\"by\":\"bob\",\"roles\":[],\"args\":{\"amount\":20}}"}, \
	{"tool.intent", "b", "{\"tool\":\"pay\",\"key\":\"k2\",\"args\":{\"amount\":20}}"}, \
	{"step.completed", "b", "{\"out\":{}}"}, \
	{"policy.decision", "c", "{\"tool\":\"pay\",\"decision\":\"approve\",\"rules\":[\"big\"],\"reasons\":[\"x\"]," PV "}"}, \
	{"approval.requested", "c", "{\"id\":\"ap2\",\"key\":\"k3\",\"tool\":\"pay\",\"args\":{},\"risk\":\"medium\",\"rules\":[],\"need\":{\"count\":1}}"}, \
	{"approval.denied", "c", "{\"id\":\"ap2\",\"by\":\"ann\",\"reason\":\"too much\"}"}, \
	{"step.failed", "c", "{\"error\":\"denied by an approver (ann): too much\"}"}, \
	{"approval.requested", "d", "{\"id\":\"ap3\",\"key\":\"k4\",\"tool\":\"pay\",\"args\":{},\"risk\":\"medium\",\"rules\":[],\"need\":{\"count\":1}}"}, \
	{"approval.expired", "d", "{\"id\":\"ap3\",\"on_timeout\":\"escalate\"}"}, \
	{"run.ended", NULL, "{\"status\":\"escalated\",\"reason\":\"approval ap3 expired\"}"}, \
}
static const ev GOV[] = GOV_EVENTS("\"policy_version\":\"pv1\"");
static const ev GOV_OOM[] = GOV_EVENTS("\"pv\":\"pv1\"");
#define NGOV (sizeof GOV / sizeof *GOV)

static const char *event_name(const rein_span *s, size_t k)
{
	return json_string_value(json_object_get(json_array_get(s->events, k), "name"));
}

static const json_t *event_attr(const rein_span *s, size_t k, const char *key)
{
	return json_object_get(json_object_get(json_array_get(s->events, k), "attrs"), key);
}

static void test_governance(void **state)
{
	rein_trace *t = NULL;
	assert_int_equal(build("run_g", GOV, NGOV, &t), REIN_OK);
	size_t n;
	const rein_span *sp = rein_trace_spans(t, &n);
	/* an allowed call: the decision on its tool span, one rule as a string */
	const rein_span *look = find(t, "execute_tool look", 0);
	assert_string_equal(attr_s(look, "rein.policy.decision"), "allow");
	assert_string_equal(attr_s(look, "rein.policy.rule"), "r1");
	assert_string_equal(event_name(look, 0), "rein.policy.decision");
	assert_string_equal(json_string_value(event_attr(look, 0, "policy_version")), "pv1");
	assert_string_equal(json_string_value(json_array_get(event_attr(look, 0, "rules"), 0)), "r1");
	assert_null(event_attr(look, 0, "reasons"));
	/* a denied call: never sent, so on the step span, before the refusal */
	const rein_span *a = find(t, "invoke_agent a", 0);
	assert_string_equal(event_name(a, 0), "rein.policy.decision");
	assert_string_equal(json_string_value(event_attr(a, 0, "decision")), "deny");
	assert_int_equal(json_array_size(event_attr(a, 0, "rules")), 2);
	assert_string_equal(event_name(a, 1), "rein.tool.refused");
	/* the approval wait: a child of the step, from the request to the second grant */
	const rein_span *b = find(t, "step b", 0), *ap = find(t, "approval pay", 0);
	assert_int_equal(ap->parent, (int)(b - sp));
	assert_int_equal(ap->kind, REIN_SPAN_INTERNAL);
	assert_false(ap->open);
	assert_int_equal(ap->start_ms, 1000 + 10 * 8);
	assert_int_equal(ap->end_ms, 1000 + 10 * 12);
	assert_string_equal(attr_s(ap, "rein.approval.id"), "ap1");
	assert_string_equal(attr_s(ap, "rein.approval.outcome"), "granted");
	const json_t *who = json_object_get(ap->attrs, "rein.approval.approver");
	assert_int_equal(json_array_size(who), 2);
	assert_string_equal(json_string_value(json_array_get(who, 0)), "ann");
	assert_string_equal(json_string_value(json_array_get(who, 1)), "bob");
	assert_true(json_is_true(json_object_get(ap->attrs, "rein.approval.edited")));
	assert_int_equal(json_array_size(ap->events), 4);
	assert_string_equal(event_name(ap, 0), "rein.approval.alert");
	assert_string_equal(event_name(ap, 1), "rein.approval.refused");
	assert_string_equal(json_string_value(event_attr(ap, 1, "reason")), "forged token");
	assert_string_equal(event_name(ap, 3), "rein.approval.granted");
	assert_true(json_is_true(event_attr(ap, 3, "edited")));
	/* the call it approved: the decision and its rules as an array */
	const rein_span *pay = find(t, "execute_tool pay", 0);
	assert_int_equal(pay->parent, (int)(b - sp));
	assert_string_equal(attr_s(pay, "rein.policy.decision"), "approve");
	assert_int_equal(json_array_size(json_object_get(pay->attrs, "rein.policy.rule")), 2);
	/* a denial: the wait ends (no error: a decision), the decision on the step */
	const rein_span *ap2 = find(t, "approval pay", 1), *c = find(t, "step c", 0);
	assert_string_equal(attr_s(ap2, "rein.approval.outcome"), "denied");
	assert_int_equal(ap2->status, REIN_STATUS_UNSET);
	assert_string_equal(json_string_value(json_array_get(json_object_get(ap2->attrs, "rein.approval.approver"), 0)), "ann");
	assert_string_equal(event_name(c, 0), "rein.policy.decision");
	assert_int_equal(c->status, REIN_STATUS_ERROR);
	/* an expiry that escalates: the wait fails with error.type timeout */
	const rein_span *ap3 = find(t, "approval pay", 2);
	assert_string_equal(attr_s(ap3, "rein.approval.outcome"), "expired");
	assert_int_equal(ap3->status, REIN_STATUS_ERROR);
	assert_string_equal(attr_s(ap3, "error.type"), "timeout");
	/* OTLP: the approvers an array of strings; the terminal view shows the wait */
	json_t *req = NULL;
	const rein_trace *one = t;
	assert_int_equal(rein_otlp_encode(&one, 1, &req, NULL), REIN_OK);
	char *text = rein_json_dump(req);
	assert_non_null(strstr(text, "{\"key\":\"rein.approval.approver\",\"value\":{\"arrayValue\":{\"values\":"
				     "[{\"stringValue\":\"ann\"},{\"stringValue\":\"bob\"}]}}}"));
	rein_free(text);
	json_decref(req);
	rein_buf out = {0};
	assert_int_equal(rein_trace_render(t, &out), REIN_OK);
	if (getenv("SHOW")) fputs(out.p, stderr);
	assert_non_null(strstr(out.p, "approval pay  40ms  [granted by ann, bob]"));
	assert_non_null(strstr(out.p, "execute_tool pay  10ms  policy approve"));
	assert_non_null(strstr(out.p, "· rein.approval.refused"));
	rein_buf_free(&out);
	rein_trace_free(t);
}

/* Message content under trace.store_prompts is exported redacted by every
 * detector class, whatever trace.redact said when it was stored. */
static const ev CONTENT[] = {
	{"run.started", NULL, "{\"workflow\":\"wf\",\"version\":\"v1\"}"},
	{"model.intent", "a", "{\"tier\":\"t\",\"model\":\"m\",\"request_hash\":\"h\",\"estimate\":{},\"params\":{},"
	 "\"request\":{\"system\":\"Write to ops@example.com\",\"messages\":[{\"role\":\"user\",\"content\":"
	 "\"card 4111 1111 1111 1111, mail jo.doe@example.org, iban GB82WEST12345698765432, key sk-abcdefghijklmnopqrstuvwx\"},"
	 "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":{\"phone\":\"+44 20 7946 0958\"}},"
	 "{\"role\":\"tool\",\"tool_call_id\":\"c0\"}]}}"},
	{"model.call", "a", "{\"tier\":\"t\",\"model\":\"m\",\"request_hash\":\"h\",\"usage\":{},\"cost_usd\":0,"
	 "\"response\":{\"text\":\"Refund 4111 1111 1111 1111 to jo.doe@example.org\",\"finish_reason\":\"stop\","
	 "\"tool_calls\":[{\"id\":\"c2\",\"name\":\"mail\",\"arguments\":{\"to\":\"jo.doe@example.org\"}}]}}"},
	{"step.completed", "a", "{\"out\":{}}"},
	{"run.ended", NULL, "{\"status\":\"succeeded\"}"},
};
#define NCONTENT (sizeof CONTENT / sizeof *CONTENT)

static void test_content_redacted(void **state)
{
	rein_trace *t = NULL;
	assert_int_equal(build("run_c", CONTENT, NCONTENT, &t), REIN_OK);
	json_t *req = NULL;
	const rein_trace *one = t;
	assert_int_equal(rein_otlp_encode(&one, 1, &req, NULL), REIN_OK);
	char *text = rein_json_dump(req);
	static const char *const raw[] = {"4111", "example.com", "example.org", "GB82", "sk-abc", "7946", NULL};
	for (size_t i = 0; raw[i]; i++)
		if (strstr(text, raw[i]) != NULL)
			fail_msg("'%s' exported: %s", raw[i], text);
	const rein_span *chat = find(t, "chat m", 0);
	const char *in = attr_s(chat, "gen_ai.input.messages"), *out = attr_s(chat, "gen_ai.output.messages");
	assert_non_null(strstr(in, "card [card:1], mail [email:"));
	assert_non_null(strstr(in, "[iban:1]"));
	assert_non_null(strstr(in, "[token:1]"));
	assert_non_null(strstr(in, "[phone:1]"));
	assert_non_null(strstr(attr_s(chat, "gen_ai.system_instructions"), "[email:"));
	/* the conventions' ToolCallResponsePart requires response: null when none was recorded */
	assert_non_null(strstr(in, "{\"id\":\"c0\",\"response\":null,\"type\":\"tool_call_response\"}"));
	/* one redactor per trace: the same value, the same placeholder in the answer */
	if (getenv("SHOW")) fprintf(stderr, "%s\n%s\n", in, out);
	assert_non_null(strstr(out, "Refund [card:1] to "));
	rein_free(text);
	json_decref(req);
	rein_trace_free(t);
}

/* The same events give the same ids; another run other ids; the formula. */
static void test_ids(void **state)
{
	rein_trace *a = NULL, *b = NULL, *c = NULL;
	assert_int_equal(build("run_a", RUN, NRUN, &a), REIN_OK);
	assert_int_equal(build("run_a", RUN, NRUN, &b), REIN_OK);
	assert_int_equal(build("run_b", RUN, NRUN, &c), REIN_OK);
	json_t *ja = NULL, *jb = NULL, *jc = NULL;
	const rein_trace *x = a;
	assert_int_equal(rein_otlp_encode(&x, 1, &ja, NULL), REIN_OK);
	x = b;
	assert_int_equal(rein_otlp_encode(&x, 1, &jb, NULL), REIN_OK);
	x = c;
	assert_int_equal(rein_otlp_encode(&x, 1, &jc, NULL), REIN_OK);
	assert_true(json_equal(ja, jb));
	assert_false(json_equal(ja, jc));
	uint8_t h[REIN_HASH_LEN];
	rein_sha256("rein.trace\0run_a", sizeof "rein.trace\0run_a" - 1, h);
	assert_memory_equal(rein_trace_id(a), h, 16);
	/* span id: role and the opening event's seq */
	const char in[] = "rein.span\0run_a\0run\0\0\0\0\0\0\0\0\1";
	rein_sha256(in, sizeof in - 1, h);
	size_t n;
	assert_memory_equal(rein_trace_spans(a, &n)[0].id, h, 8);
	size_t k;
	const rein_span *s = rein_trace_spans(a, &k);
	for (size_t i = 0; i < k; i++)
		for (size_t j = i + 1; j < k; j++)
			assert_memory_not_equal(s[i].id, s[j].id, 8);
	json_decref(ja);
	json_decref(jb);
	json_decref(jc);
	rein_trace_free(a);
	rein_trace_free(b);
	rein_trace_free(c);
}

/* The OTLP/JSON forms: int64 as strings, doubles, arrays, enums, hex ids. */
static void test_encode(void **state)
{
	rein_trace *t = NULL;
	assert_int_equal(build("run_a", RUN, NRUN, &t), REIN_OK);
	json_t *req = NULL;
	const rein_trace *one = t;
	assert_int_equal(rein_otlp_encode(&one, 1, &req, NULL), REIN_OK);
	json_t *rs = json_array_get(json_object_get(req, "resourceSpans"), 0);
	json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
	assert_string_equal(json_string_value(json_object_get(ss, "schemaUrl")), REIN_TRACE_SCHEMA_URL);
	json_t *spans = json_object_get(ss, "spans");
	json_t *root = json_array_get(spans, 0);
	assert_int_equal(strlen(json_string_value(json_object_get(root, "traceId"))), 32);
	assert_int_equal(strlen(json_string_value(json_object_get(root, "spanId"))), 16);
	assert_null(json_object_get(root, "parentSpanId"));
	assert_string_equal(json_string_value(json_object_get(root, "startTimeUnixNano")), "1000000000");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "status"), "code")), 2);
	size_t i;
	json_t *sp;
	bool saw_int = false, saw_arr = false;
	json_array_foreach(spans, i, sp) {
		if (i > 0)
			assert_int_equal(strlen(json_string_value(json_object_get(sp, "parentSpanId"))), 16);
		assert_true(json_is_integer(json_object_get(sp, "kind")));
		size_t k;
		json_t *kv;
		json_array_foreach(json_object_get(sp, "attributes"), k, kv) {
			const char *key = json_string_value(json_object_get(kv, "key"));
			json_t *v = json_object_get(kv, "value");
			if (strcmp(key, "gen_ai.usage.input_tokens") == 0) {
				assert_string_equal(json_string_value(json_object_get(v, "intValue")), "7");
				saw_int = true;
			}
			if (strcmp(key, "gen_ai.response.finish_reasons") == 0) {
				json_t *vals = json_object_get(json_object_get(v, "arrayValue"), "values");
				assert_string_equal(json_string_value(json_object_get(json_array_get(vals, 0), "stringValue")),
						    "tool_calls");
				saw_arr = true;
			}
			if (strcmp(key, "rein.cost_usd") == 0)
				assert_true(json_real_value(json_object_get(v, "doubleValue")) == 0.5);
		}
	}
	assert_true(saw_int && saw_arr);
	json_decref(req);
	rein_trace_free(t);
}

static void test_refuses(void **state)
{
	rein_trace *t = NULL;
	static const ev first_not_start[] = {{"step.completed", "a", "{\"out\":1}"}};
	assert_int_equal(build("r", first_not_start, 1, &t), REIN_ECORRUPT);
	static const ev unknown[] = {{"run.started", NULL, "{}"}, {"no.such", NULL, "{}"}};
	assert_int_equal(build("r", unknown, 2, &t), REIN_ECORRUPT);
	static const ev after_end[] = {{"run.started", NULL, "{}"},
				       {"run.ended", NULL, "{\"status\":\"succeeded\"}"},
				       {"step.completed", "a", "{}"}};
	assert_int_equal(build("r", after_end, 3, &t), REIN_ECORRUPT);
	/* seq going back */
	t = rein_trace_new("r");
	rein_event_row r = {.run_id = "r", .seq = 2, .type = "run.started", .payload = "{}"};
	assert_int_equal(rein_trace_add(t, &r, NULL), REIN_OK);
	r.seq = 2;
	r.type = "run.resumed";
	assert_int_equal(rein_trace_add(t, &r, NULL), REIN_ECORRUPT);
	rein_trace_free(t);
}

/* A purged payload (retention) still gives the skeleton; an open run's
 * spans stay open with the last event's time. */
static void test_skeleton(void **state)
{
	static const ev evs[] = {{"run.started", NULL, NULL},
				 {"model.intent", "s", NULL},
				 {"model.call", "s", NULL},
				 {"step.completed", "s", NULL},
				 {"tool.intent", "u", NULL}};
	rein_trace *t = NULL;
	assert_int_equal(build("r", evs, 5, &t), REIN_OK);
	size_t n;
	const rein_span *s = rein_trace_spans(t, &n);
	assert_int_equal(n, 5);
	assert_string_equal(s[0].name, "invoke_workflow ?");
	assert_string_equal(s[2].name, "chat ?");
	assert_false(s[2].open);
	assert_true(s[0].open && s[4].open);
	assert_int_equal(s[0].end_ms, 1040);
	assert_false(rein_trace_ended(t));
	rein_buf b = {0};
	assert_int_equal(rein_trace_render(t, &b), REIN_OK);
	assert_non_null(strstr(b.p, "(open)"));
	rein_buf_free(&b);
	rein_trace_free(t);
}

static void test_cfg_env(void **state)
{
	rein_otlp_cfg c = {0};
	unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_HEADERS");
	assert_int_equal(rein_otlp_cfg_env(&c, NULL), REIN_OK);
	assert_string_equal(c.url, "http://localhost:4318/v1/traces");
	rein_otlp_cfg_clear(&c);
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1/", 1);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", " a = b%2Cc ,k=v=w", 1);
	assert_int_equal(rein_otlp_cfg_env(&c, NULL), REIN_OK);
	assert_string_equal(c.url, "http://c:1/v1/traces");
	assert_int_equal(c.nheaders, 2);
	assert_string_equal(c.headers[0], "a: b,c");
	assert_string_equal(c.headers[1], "k: v=w");
	rein_otlp_cfg_clear(&c);
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:2/x", 1);
	assert_int_equal(rein_otlp_cfg_env(&c, NULL), REIN_OK);
	assert_string_equal(c.url, "http://t:2/x");
	rein_otlp_cfg_clear(&c);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=b%0d%0aEvil: 1", 1);
	rein_err e = {0};
	assert_int_equal(rein_otlp_cfg_env(&c, &e), REIN_EINVAL);
	rein_err_clear(&e);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", "novalue", 1);
	assert_int_equal(rein_otlp_cfg_env(&c, &e), REIN_EINVAL);
	rein_err_clear(&e);
	unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsetenv("OTEL_EXPORTER_OTLP_HEADERS");
}

/* Every allocation failing in turn: a clean REIN_ENOMEM, no leak, and once
 * the faults stop reaching, the whole trace. */
static void test_alloc_faults(void **state)
{
	bool done = false;
	for (long n = 1; !done && n < 5000; n++) {
		rein_trace *t = NULL;
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = build("run_a", RUN, NRUN, &t);
		rein_trace *g = NULL, *c = NULL;
		if (rc == REIN_OK)
			rc = build("run_g", GOV_OOM, NGOV, &g);
		if (rc == REIN_OK)
			rc = build("run_c", CONTENT, NCONTENT, &c);
		rein_trace_free(g);
		rein_trace_free(c);
		json_t *req = NULL;
		rein_buf b = {0};
		if (rc == REIN_OK) {
			const rein_trace *one = t;
			rc = rein_otlp_encode(&one, 1, &req, NULL);
			if (rc == REIN_OK)
				rc = rein_trace_render(t, &b);
		}
		done = rein_fault_count(REIN_FAULT_ALLOC) < n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		assert_true(rc == REIN_OK || rc == REIN_ENOMEM);
		if (done)
			assert_int_equal(rc, REIN_OK);
		json_decref(req);
		rein_buf_free(&b);
		rein_trace_free(t);
	}
	assert_true(done);
}


/* The online exporter's queue: bounded, drops counted; a run not seen from
 * its start is skipped; a dead collector fails the batch, never the caller. */
static void test_exporter_queue(void **state)
{
	rein_otlp_cfg cfg = {.url = "http://127.0.0.1:9/v1/traces", .max_attempts = 1,
			     .max_backoff_ms = 10, .timeout_ms = 1000};
	rein_otlp_exporter *x = NULL;
	assert_int_equal(rein_otlp_exporter_new(&cfg, 2, false, &x, NULL), REIN_OK);
	static const ev one[] = {{"run.started", NULL, "{\"workflow\":\"w\"}"},
				 {"step.completed", "s", "{\"out\":1}"},
				 {"run.ended", NULL, "{\"status\":\"succeeded\"}"}};
	char id[32];
	for (int r = 0; r < 3; r++) { /* three runs, their events interleaved in one commit */
		rein_event_row rows[6];
		for (int i = 0; i < 6; i++) {
			snprintf(id, sizeof id, "run_%d%c", r, 'a' + i % 2);
			rows[i] = (rein_event_row){.run_id = rein_strdup(id), .seq = i / 2 + 1,
						   .type = one[i / 2].type, .step = one[i / 2].step,
						   .at = 5, .payload = one[i / 2].payload};
		}
		rein_otlp_exporter_commit(x, rows, r == 2 ? 4 : 6);
		for (int i = 0; i < 6; i++)
			rein_free((char *)rows[i].run_id);
	}
	/* a resumed run: its first event here is not run.started */
	rein_event_row late[] = {{.run_id = "run_z", .seq = 7, .type = "step.completed", .step = "s", .payload = "{}"},
				 {.run_id = "run_z", .seq = 8, .type = "run.ended", .payload = "{\"status\":\"failed\"}"}};
	rein_otlp_exporter_commit(x, late, 2);
	rein_otlp_exporter_stats st;
	rein_otlp_exporter_stats_get(x, &st);
	assert_int_equal(st.queued, 2);
	assert_int_equal(st.dropped, 2); /* 4 runs ended, seen whole; room for 2 */
	assert_int_equal(st.skipped, 1);
	rein_otlp_exporter_flush(x);
	rein_otlp_exporter_free(x, 0, &st);
	assert_int_equal(st.failed, 2);
	assert_int_equal(st.exported, 0);
	assert_int_equal(st.http.requests, 1);
}

/* The collector-answer parsers (also fuzzed: fuzz/fuzz_otlp.c). */
static void test_answer_parsers(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		int64_t ms;
	} ra[] = {{"Retry-After: 3\r\n", 3000},       {"retry-after:120\r\n", 120000},
		  {"RETRY-AFTER:\t0\r\n", 0},        {"Retry-After: soon\r\n", -1},
		  {"Retry-After: 12abc\r\n", -1},     {"Retry-After: -5\r\n", -1},
		  {"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", -1},
		  {"Retry-After: 99999999999999999999999\r\n", REIN_OTLP_RETRY_AFTER_MAX_S * 1000LL},
		  {"Retry-Afterx: 3\r\n", -1},        {"Content-Type: x\r\n", -1},
		  {"Retry-After:", -1}};
	for (size_t i = 0; i < sizeof ra / sizeof *ra; i++)
		assert_int_equal(rein_otlp_retry_after(ra[i].line, strlen(ra[i].line)), ra[i].ms);
	static const struct {
		const char *body;
		long rejected;
		const char *msg;
	} ps[] = {{"", 0, NULL},
		  {"{}", 0, NULL},
		  {"not json", 0, NULL},
		  {"{\"partialSuccess\":{}}", 0, NULL},
		  {"{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"bad\"}}", 2, "bad"},
		  {"{\"partialSuccess\":{\"rejectedSpans\":3}}", 3, NULL},
		  {"{\"partialSuccess\":{\"rejectedSpans\":\"99\"}}", 5, NULL}, /* clamped */
		  {"{\"partialSuccess\":{\"rejectedSpans\":\"-9223372036854775808\"}}", 0, NULL},
		  {"{\"partialSuccess\":{\"rejectedSpans\":\"2x\",\"errorMessage\":\"\"}}", 0, NULL}};
	for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
		long rej = -1;
		char *msg = NULL;
		assert_int_equal(rein_otlp_partial_parse(ps[i].body, strlen(ps[i].body), 5, &rej, &msg),
				 REIN_OK);
		assert_int_equal(rej, ps[i].rejected);
		if (ps[i].msg)
			assert_string_equal(msg, ps[i].msg);
		else
			assert_null(msg);
		rein_free(msg);
	}
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree),     cmocka_unit_test(test_ids),
		cmocka_unit_test(test_encode),   cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_skeleton), cmocka_unit_test(test_cfg_env),
		cmocka_unit_test(test_alloc_faults), cmocka_unit_test(test_exporter_queue),
		cmocka_unit_test(test_answer_parsers), cmocka_unit_test(test_governance),
		cmocka_unit_test(test_content_redacted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
