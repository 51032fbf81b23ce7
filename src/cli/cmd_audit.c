/*
 * rein audit export RUN [--format json|md]: what a reviewer reads about one
 * run, from its log alone: who requested it, every policy decision with its
 * rules, every approval, the data the agent read with its provenance (tool
 * results and model calls, by step), every write it made and its result, the
 * cost, the outcome, and the audit status of the run (its chain verifies,
 * where it is anchored). The JSON document is built first; the Markdown is
 * rendered from it, so both say the same facts.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static const char usage_text[] =
	"usage: rein audit export RUN [--format json|md] [--db PATH]\n"
	"\n"
	"Prints the audit record of one run (docs/audit.md): requester, policy\n"
	"decisions with their rules, approvals, the data the agent read (tool results\n"
	"and model calls, by step, with their source), every write and its result,\n"
	"the cost, the outcome, and the audit status (the run's chain verifies, the\n"
	"anchor that holds its head). JSON by default; --format md for people.\n"
	"Exit 0 when the run verifies, 1 when it does not (the record still prints),\n"
	"2 for an unknown run or bad usage.\n";

/* What the walk over the log builds. */
typedef struct exp_ctx {
	json_t *doc;       /* the export */
	json_t *decisions, *approvals, *reads, *writes;
	json_t *open;      /* tool calls whose result is not seen yet: [{entry, step, call_id}] */
	double cost;
	json_int_t model_calls, tin, tout;
	bool nomem;
} exp_ctx;

static void put(exp_ctx *x, json_t *o, const char *k, json_t *v)
{
	if (v == NULL || json_object_set_new(o, k, v) != 0)
		x->nomem = true;
}

static void push(exp_ctx *x, json_t *a, json_t *v)
{
	if (v == NULL || json_array_append_new(a, v) != 0)
		x->nomem = true;
}

/* Copies key k of from into to when present. */
static void copy(exp_ctx *x, json_t *to, const json_t *from, const char *k)
{
	json_t *v = json_object_get(from, k);
	if (v)
		put(x, to, k, json_incref(v));
}

static json_t *entry_base(exp_ctx *x, const rein_event_row *ev)
{
	json_t *e = json_object();
	if (e == NULL) {
		x->nomem = true;
		return NULL;
	}
	put(x, e, "seq", json_integer(ev->seq));
	put(x, e, "step", ev->step ? json_string(ev->step) : json_null());
	put(x, e, "at", json_integer(ev->at));
	return e;
}

/* The open tool call of step with that call_id (NULL: a tool step's, whose
 * intent has none; any: whatever it has, as a step has one call out at a
 * time), or -1. */
static long find_open(exp_ctx *x, const char *step, const char *call_id, bool any)
{
	size_t i;
	json_t *o;
	json_array_foreach(x->open, i, o) {
		const char *s = json_string_value(json_object_get(o, "step"));
		const char *c = json_string_value(json_object_get(o, "call_id"));
		if (s && step && strcmp(s, step) == 0 &&
		    (any || (c == NULL && call_id == NULL) || (c && call_id && strcmp(c, call_id) == 0)))
			return (long)i;
	}
	return -1;
}

/* Records the result of the open call at index i and closes it. */
static void close_call(exp_ctx *x, long i, const rein_event_row *ev, const json_t *p,
		       const char *outcome)
{
	json_t *o = json_array_get(x->open, (size_t)i);
	json_t *entry = json_object_get(o, "entry");
	json_t *r = json_object();
	if (r == NULL) {
		x->nomem = true;
		return;
	}
	put(x, r, "seq", json_integer(ev->seq));
	put(x, r, "event", json_string(ev->type));
	copy(x, r, p, "out");
	copy(x, r, p, "error");
	copy(x, r, p, "status");
	copy(x, r, p, "attempt");
	copy(x, r, p, "latency_ms");
	copy(x, r, p, "result");
	put(x, entry, "result", r);
	put(x, entry, "outcome", json_string(outcome));
	json_array_remove(x->open, (size_t)i);
}

static void on_intent(exp_ctx *x, const rein_event_row *ev, const json_t *p)
{
	json_t *e = entry_base(x, ev);
	if (e == NULL)
		return;
	const char *tool = json_string_value(json_object_get(p, "tool"));
	const char *effect = json_string_value(json_object_get(p, "effect"));
	bool write = effect && strcmp(effect, "write") == 0;
	char src[200];
	snprintf(src, sizeof src, "tool:%s", tool ? tool : "?");
	put(x, e, "kind", json_string("tool"));
	put(x, e, "tool", json_string(tool ? tool : "?"));
	put(x, e, "effect", json_string(effect ? effect : "read"));
	copy(x, e, p, "key");
	copy(x, e, p, "call_id");
	copy(x, e, p, "args");
	copy(x, e, p, "credential");
	if (!write)
		put(x, e, "source", json_string(src));
	put(x, e, "result", json_null());
	put(x, e, "outcome", json_string("no result recorded"));
	push(x, write ? x->writes : x->reads, json_incref(e));
	json_t *o = json_object();
	if (o == NULL) {
		json_decref(e);
		x->nomem = true;
		return;
	}
	put(x, o, "entry", e);
	put(x, o, "step", ev->step ? json_string(ev->step) : json_null());
	copy(x, o, p, "call_id");
	push(x, x->open, o);
}

static void on_model_call(exp_ctx *x, const rein_event_row *ev, const json_t *p)
{
	json_t *e = entry_base(x, ev);
	if (e == NULL)
		return;
	const char *tier = json_string_value(json_object_get(p, "tier"));
	char src[200];
	snprintf(src, sizeof src, "model:%s", tier ? tier : "?");
	put(x, e, "kind", json_string("model"));
	put(x, e, "source", json_string(src));
	copy(x, e, p, "tier");
	copy(x, e, p, "provider");
	copy(x, e, p, "model");
	copy(x, e, p, "request_hash");
	copy(x, e, p, "usage");
	copy(x, e, p, "cost_usd");
	copy(x, e, p, "cached");
	push(x, x->reads, e);
	const json_t *u = json_object_get(p, "usage");
	x->model_calls++;
	x->cost += json_number_value(json_object_get(p, "cost_usd"));
	x->tin += json_integer_value(json_object_get(u, "input"));
	x->tout += json_integer_value(json_object_get(u, "output"));
}

/* Whether an event records an approval or a denial (the approval events of
 * the governance work, or an approval arriving through the inbox). */
static bool is_approval(const rein_event_row *ev, const json_t *p)
{
	if (strncmp(ev->type, "approval.", 9) == 0)
		return true;
	if (strcmp(ev->type, "inbox.received") != 0)
		return false;
	const char *t = json_string_value(json_object_get(p, "type"));
	return t && (strcmp(t, "approve") == 0 || strcmp(t, "approval") == 0 ||
		     strcmp(t, "deny") == 0 || strcmp(t, "denial") == 0);
}

static void on_started(exp_ctx *x, const json_t *p)
{
	json_t *req = json_object_get(p, "requester");
	put(x, x->doc, "requester",
	    req && !json_is_null(req) ? json_incref(req) : json_string("unknown"));
	copy(x, x->doc, p, "input");
	copy(x, x->doc, p, "retry_of");
}

static void on_ended(exp_ctx *x, const rein_event_row *ev, const json_t *p)
{
	json_t *o = entry_base(x, ev);
	if (o == NULL)
		return;
	copy(x, o, p, "status");
	copy(x, o, p, "reason");
	copy(x, o, p, "output");
	put(x, x->doc, "outcome", o);
}

static int walk(void *ud, const rein_event_row *ev)
{
	exp_ctx *x = ud;
	json_t *p = ev->payload ? rein_json_parse(ev->payload, strlen(ev->payload), NULL) : NULL;
	const char *t = ev->type;
	long i;
	if (strcmp(t, "run.started") == 0) {
		on_started(x, p);
	} else if (strcmp(t, "policy.decision") == 0) {
		json_t *e = entry_base(x, ev);
		if (e) {
			put(x, e, "decision", p ? json_incref(p) : json_null());
			push(x, x->decisions, e);
		}
	} else if (is_approval(ev, p)) {
		json_t *e = entry_base(x, ev);
		if (e) {
			put(x, e, "event", json_string(t));
			put(x, e, "data", p ? json_incref(p) : json_null());
			push(x, x->approvals, e);
		}
	} else if (strcmp(t, "tool.intent") == 0) {
		on_intent(x, ev, p);
	} else if (strcmp(t, "tool.result") == 0) {
		const char *cid = json_string_value(json_object_get(p, "call_id"));
		if ((i = find_open(x, ev->step, cid, cid == NULL)) >= 0)
			close_call(x, i, ev, p, json_object_get(p, "error") ? "error" : "ok");
	} else if (strcmp(t, "tool.fallback") == 0) {
		if ((i = find_open(x, ev->step, NULL, true)) >= 0)
			close_call(x, i, ev, p, "fallback");
	} else if (strcmp(t, "step.completed") == 0 || strcmp(t, "step.failed") == 0) {
		/* a tool step's call answers with its step's end */
		if ((i = find_open(x, ev->step, NULL, false)) >= 0)
			close_call(x, i, ev, p, t[5] == 'c' ? "ok" : "error");
	} else if (strcmp(t, "model.call") == 0) {
		on_model_call(x, ev, p);
	} else if (strcmp(t, "run.ended") == 0) {
		on_ended(x, ev, p);
	}
	json_decref(p);
	return x->nomem ? REIN_ENOMEM : 0;
}

typedef struct problems {
	json_t *list;
} problems;

static void note_problem(void *ud, const char *run, int64_t seq, const char *why)
{
	problems *p = ud;
	char line[600];
	if (run)
		snprintf(line, sizeof line, "%s", why);
	else
		snprintf(line, sizeof line, "store: %s", why);
	(void)seq;
	json_array_append_new(p->list, json_string(line));
}

/* The audit status of the run: its chain with its anchors, the anchor chain. */
static int audit_status(rein_store *st, const rein_run_row *row, exp_ctx *x, rein_err *e)
{
	problems pr = {json_array()};
	rein_verify_stats vs = {0};
	char hex[2 * REIN_HASH_LEN + 1];
	json_t *a = json_object();
	int rc = pr.list && a ? REIN_OK : rein_err_set(e, REIN_ENOMEM, "out of memory");
	if (rc == REIN_OK)
		rc = rein_store_verify_one(st, row->id, note_problem, &pr, &vs, e);
	if (rc != REIN_OK)
		goto out;
	rein_hex(row->last_hash, REIN_HASH_LEN, hex);
	put(x, a, "verified", json_boolean(json_array_size(pr.list) == 0));
	put(x, a, "events", json_integer(row->last_seq));
	put(x, a, "head", json_string(hex));
	if (vs.run_anchor > 0) {
		json_t *an = json_pack("{s:I,s:I,s:b}", "anchor", (json_int_t)vs.run_anchor, "run_seq",
				       (json_int_t)vs.run_anchor_seq, "covers_head",
				       vs.run_anchor_seq == row->last_seq);
		put(x, a, "anchored", an);
	} else {
		put(x, a, "anchored", json_null());
	}
	rein_hex(vs.anchor_head, REIN_HASH_LEN, hex);
	put(x, a, "anchor_chain", json_pack("{s:I,s:s}", "anchors", (json_int_t)vs.anchors, "head", hex));
	put(x, a, "problems", json_incref(pr.list));
	put(x, x->doc, "audit", a);
	a = NULL;
out:
	json_decref(a);
	json_decref(pr.list);
	return rc;
}

/* Builds the export of run id into *out. */
static int build(rein_store *st, const rein_run_row *row, json_t **out, rein_err *e)
{
	exp_ctx x = {.doc = json_object(), .decisions = json_array(), .approvals = json_array(),
		     .reads = json_array(), .writes = json_array(), .open = json_array()};
	int rc = REIN_OK;
	if (!x.doc || !x.decisions || !x.approvals || !x.reads || !x.writes || !x.open) {
		rc = rein_err_set(e, REIN_ENOMEM, "out of memory");
		goto out;
	}
	put(&x, x.doc, "run", json_string(row->id));
	put(&x, x.doc, "workflow", json_string(row->workflow ? row->workflow : ""));
	put(&x, x.doc, "version", json_string(row->version));
	put(&x, x.doc, "status", json_string(rein_status_name(row->status)));
	put(&x, x.doc, "created_at", json_integer(row->created_at));
	put(&x, x.doc, "updated_at", json_integer(row->updated_at));
	put(&x, x.doc, "requester", json_string("unknown"));
	if ((rc = rein_store_events_load(st, row->id, walk, &x, e)) != REIN_OK)
		goto out;
	put(&x, x.doc, "policy_decisions", json_incref(x.decisions));
	put(&x, x.doc, "approvals", json_incref(x.approvals));
	put(&x, x.doc, "reads", json_incref(x.reads));
	put(&x, x.doc, "writes", json_incref(x.writes));
	put(&x, x.doc, "cost",
	    json_pack("{s:f,s:I,s:I,s:I}", "usd", x.cost, "model_calls", x.model_calls,
		      "input_tokens", x.tin, "output_tokens", x.tout));
	if (json_object_get(x.doc, "outcome") == NULL)
		put(&x, x.doc, "outcome", json_pack("{s:s}", "status", rein_status_name(row->status)));
	if ((rc = audit_status(st, row, &x, e)) != REIN_OK)
		goto out;
	if (x.nomem) {
		rc = rein_err_set(e, REIN_ENOMEM, "out of memory");
		goto out;
	}
	*out = x.doc;
	x.doc = NULL;
out:
	json_decref(x.doc);
	json_decref(x.decisions);
	json_decref(x.approvals);
	json_decref(x.reads);
	json_decref(x.writes);
	json_decref(x.open);
	return rc;
}

/* ---- Markdown, from the JSON ---- */

/* A JSON value on one line (compact), for a table cell or a list item. */
static void md_json(FILE *f, const json_t *v)
{
	char *s = v ? rein_json_dump(v) : NULL;
	fprintf(f, "`%s`", s ? s : "null");
	rein_free(s);
}

static const char *str(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

static void md_time(FILE *f, const json_t *o, const char *k)
{
	char t[32];
	rein_time_format(json_integer_value(json_object_get(o, k)), t);
	fputs(t, f);
}

static void md_requester(FILE *f, const json_t *req)
{
	if (json_is_string(req)) {
		fprintf(f, "%s\n", json_string_value(req));
		return;
	}
	md_json(f, req);
	fputc('\n', f);
}

static void md_calls(FILE *f, const json_t *list, bool writes)
{
	size_t i;
	json_t *e;
	if (json_array_size(list) == 0) {
		fputs(writes ? "\nnone recorded\n" : "\nnothing read\n", f);
		return;
	}
	const char *step = NULL;
	json_array_foreach(list, i, e) {
		const char *s = str(e, "step", "(run)");
		if (step == NULL || strcmp(step, s) != 0)
			fprintf(f, "\n### step `%s`\n\n", s);
		step = s;
		if (strcmp(str(e, "kind", ""), "model") == 0) {
			fprintf(f, "- seq %lld, source %s: model call, provider %s, model ",
				(long long)json_integer_value(json_object_get(e, "seq")),
				str(e, "source", "?"), str(e, "provider", "?"));
			md_json(f, json_object_get(e, "model"));
			fputs(", request ", f);
			fprintf(f, "`%.16s`", str(e, "request_hash", "?"));
			fputs(", usage ", f);
			md_json(f, json_object_get(e, "usage"));
			fputs(", cost_usd ", f);
			md_json(f, json_object_get(e, "cost_usd"));
			fputc('\n', f);
			continue;
		}
		fprintf(f, "- seq %lld, %s`%s` (%s), key `%s`, ",
			(long long)json_integer_value(json_object_get(e, "seq")),
			writes ? "write " : "source tool:", str(e, "tool", "?"), str(e, "effect", "?"),
			str(e, "key", "?"));
		if (json_object_get(e, "credential"))
			fprintf(f, "credential %s, ", str(e, "credential", "?"));
		fputs("args ", f);
		md_json(f, json_object_get(e, "args"));
		json_t *r = json_object_get(e, "result");
		fprintf(f, ": **%s**", str(e, "outcome", "?"));
		if (json_is_object(r)) {
			fprintf(f, " (seq %lld)", (long long)json_integer_value(json_object_get(r, "seq")));
			if (json_object_get(r, "out")) {
				fputs(", out ", f);
				md_json(f, json_object_get(r, "out"));
			}
			if (json_object_get(r, "error"))
				fprintf(f, ", error: %s", str(r, "error", "?"));
			if (json_object_get(r, "result")) {
				fputs(", result ", f);
				md_json(f, json_object_get(r, "result"));
			}
		}
		fputc('\n', f);
	}
}

static void md_events(FILE *f, const json_t *list, const char *field)
{
	size_t i;
	json_t *e;
	if (json_array_size(list) == 0) {
		fputs("none recorded\n", f);
		return;
	}
	json_array_foreach(list, i, e) {
		fprintf(f, "- seq %lld, step `%s`, at ",
			(long long)json_integer_value(json_object_get(e, "seq")), str(e, "step", "(run)"));
		md_time(f, e, "at");
		fputs(": ", f);
		md_json(f, json_object_get(e, field));
		fputc('\n', f);
	}
}

static void md_render(FILE *f, const json_t *d)
{
	const json_t *cost = json_object_get(d, "cost");
	const json_t *out = json_object_get(d, "outcome");
	const json_t *a = json_object_get(d, "audit");
	const json_t *an = json_object_get(a, "anchored");
	fprintf(f, "# Audit record of run %s\n\n", str(d, "run", "?"));
	fprintf(f, "- workflow: %s, version `%.12s`\n", str(d, "workflow", "?"), str(d, "version", "?"));
	fputs("- created: ", f);
	md_time(f, d, "created_at");
	fputs(", last updated: ", f);
	md_time(f, d, "updated_at");
	fputs("\n- requester: ", f);
	md_requester(f, json_object_get(d, "requester"));
	fputs("\n## Policy decisions\n\n", f);
	md_events(f, json_object_get(d, "policy_decisions"), "decision");
	fputs("\n## Approvals\n\n", f);
	md_events(f, json_object_get(d, "approvals"), "data");
	fputs("\n## Data read (by step, with its source)\n", f);
	md_calls(f, json_object_get(d, "reads"), false);
	fputs("\n## Writes and their results\n", f);
	md_calls(f, json_object_get(d, "writes"), true);
	fprintf(f, "\n## Cost\n\n- %.6f USD over %lld model call(s), %lld input and %lld output tokens\n",
		json_number_value(json_object_get(cost, "usd")),
		(long long)json_integer_value(json_object_get(cost, "model_calls")),
		(long long)json_integer_value(json_object_get(cost, "input_tokens")),
		(long long)json_integer_value(json_object_get(cost, "output_tokens")));
	fprintf(f, "\n## Outcome\n\n- status: **%s**\n", str(out, "status", "?"));
	if (json_object_get(out, "reason") && !json_is_null(json_object_get(out, "reason")))
		fprintf(f, "- reason: %s\n", str(out, "reason", ""));
	if (json_object_get(out, "output")) {
		fputs("- output: ", f);
		md_json(f, json_object_get(out, "output"));
		fputc('\n', f);
	}
	bool ok = json_is_true(json_object_get(a, "verified"));
	fprintf(f, "\n## Audit status\n\n- chain: %s, %lld event(s), head `%s`\n",
		ok ? "**verifies**" : "**DOES NOT VERIFY**",
		(long long)json_integer_value(json_object_get(a, "events")), str(a, "head", "?"));
	if (json_is_object(an))
		fprintf(f, "- anchored at anchor %lld (run seq %lld%s)\n",
			(long long)json_integer_value(json_object_get(an, "anchor")),
			(long long)json_integer_value(json_object_get(an, "run_seq")),
			json_is_true(json_object_get(an, "covers_head")) ? ", its head" : "");
	else
		fputs("- not anchored (the run has not ended or suspended yet)\n", f);
	const json_t *ac = json_object_get(a, "anchor_chain");
	fprintf(f, "- anchor chain: %lld anchor(s), head `%s`\n",
		(long long)json_integer_value(json_object_get(ac, "anchors")), str(ac, "head", "?"));
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(a, "problems"), i, p)
		fprintf(f, "- problem: %s\n", json_string_value(p));
}

int rein_cmd_audit_export(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'd'},
					   {"format", required_argument, 0, 'f'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *format = "json";
	rein_store *st = NULL;
	rein_run_row row = {0};
	rein_err e = {0};
	json_t *doc = NULL;
	rein_store_opts o = {.must_exist = true};
	int ex = 2, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'f': format = optarg; break;
		case 'h': fputs(usage_text, stdout); ex = 0; goto out;
		default:
			fprintf(stderr, "rein audit export: bad option '%s'\n%s", argv[optind - 1],
				usage_text);
			goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "rein audit export: %s\n%s",
			optind >= argc ? "which run? (RUN is required)" : "one RUN at a time", usage_text);
		goto out;
	}
	if (strcmp(format, "json") != 0 && strcmp(format, "md") != 0) {
		fprintf(stderr, "rein audit export: --format is json or md, not '%s'\n", format);
		goto out;
	}
	if (db == NULL)
		db = getenv("REIN_DB") && *getenv("REIN_DB") ? getenv("REIN_DB") : "rein.db";
	int rc = rein_store_open(db, &o, &st, &e);
	if (rc == REIN_OK && (rc = rein_store_run_get(st, argv[optind], &row, &e)) == REIN_OK) {
		ex = 1;
		rc = build(st, &row, &doc, &e);
	}
	if (rc != REIN_OK) {
		fprintf(stderr, "rein audit export: %s\n", e.msg);
		goto out;
	}
	if (strcmp(format, "md") == 0) {
		md_render(stdout, doc);
	} else {
		char *s = rein_json_dump(doc);
		if (s == NULL) {
			fprintf(stderr, "rein audit export: out of memory\n");
			goto out;
		}
		puts(s);
		rein_free(s);
	}
	ex = json_is_true(json_object_get(json_object_get(doc, "audit"), "verified")) ? 0 : 1;
out:
	json_decref(doc);
	rein_run_row_clear(&row);
	rein_store_close(st);
	rein_err_clear(&e);
	return ex;
}
