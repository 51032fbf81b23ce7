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
	json_t *intents;   /* step -> its latest model.intent's provenance {seq, labels, reads} */
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
	/* the provenance of what its prompt read, from the call's model.intent */
	json_t *in = ev->step ? json_object_get(x->intents, ev->step) : NULL;
	if (in != NULL) {
		copy(x, e, in, "labels");
		copy(x, e, in, "reads");
		put(x, e, "intent_seq", json_incref(json_object_get(in, "seq")));
		json_object_del(x->intents, ev->step);
	}
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
			copy(x, e, p, "tool");
			/* the labels the decision used: {agent, context, args: {NAME: {sources, readers, trusted}}} */
			json_t *pv = json_object_get(p, "provenance");
			put(x, e, "provenance", pv ? json_incref(pv) : json_null());
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
	} else if (strcmp(t, "model.intent") == 0 && ev->step != NULL) {
		json_t *in = json_pack("{s:I, s:O?, s:O?}", "seq", (json_int_t)ev->seq, "labels",
				       json_object_get(p, "labels"), "reads", json_object_get(p, "reads"));
		if (in == NULL || json_object_set_new(x->intents, ev->step, in) != 0)
			x->nomem = true;
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

/*
 * The approvals, one entry per approval.requested (docs/approvals.md), from
 * the approval events the walk collected: who asked for what exact action
 * (tool, arguments, action hash, policy version), each vote (who, when, their
 * roles, reason and any edit of the arguments), the tokens refused, the
 * outcome (granted once need.count votes are in, denied, expired, pending),
 * and the call that was then sent (the tool call with the request's
 * idempotency key, and its arguments). Kept apart from the walk, so that the
 * approvals work can keep or replace it whole.
 */
static void audit_approvals(exp_ctx *x)
{
	json_t *list = json_array(), *by_id = json_object();
	size_t i;
	json_t *e;
	if (list == NULL || by_id == NULL) {
		x->nomem = true;
		goto out;
	}
	json_array_foreach(x->approvals, i, e) {
		const char *ev = json_string_value(json_object_get(e, "event"));
		const json_t *d = json_object_get(e, "data");
		const char *id = json_string_value(json_object_get(d, "id"));
		if (ev == NULL || id == NULL || strncmp(ev, "approval.", 9) != 0)
			continue; /* an inbox entry: its verdict is the approval.* event that follows */
		const char *what = ev + 9;
		json_t *a = json_object_get(by_id, id);
		if (strcmp(what, "requested") == 0) {
			a = json_pack("{s:s, s:O, s:O, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O, s:O, "
				      "s:O?, s:[], s:[], s:[], s:s, s:n, s:[], s:n}",
				      "id", id, "step", json_object_get(e, "step"), "requested_seq",
				      json_object_get(e, "seq"), "tool", json_object_get(d, "tool"), "args",
				      json_object_get(d, "args"), "action_hash", json_object_get(d, "action_hash"),
				      "policy_version", json_object_get(d, "policy_version"), "risk",
				      json_object_get(d, "risk"), "rules", json_object_get(d, "rules"), "need",
				      json_object_get(d, "need"), "requested_at", json_object_get(e, "at"),
				      "requester", json_object_get(d, "requester") ? json_object_get(d, "requester")
										 : json_null(),
				      "sla_due_at", json_object_get(d, "sla_due_at"), "votes", "refused", "alerts",
				      "outcome", "pending", "decided_at", "decided_by", "sent");
			if (a == NULL || json_object_set_new(by_id, id, a) != 0 ||
			    json_array_append(list, a) != 0) {
				x->nomem = true;
				goto out;
			}
			continue;
		}
		if (a == NULL)
			continue;
		json_t *at = json_object_get(e, "at");
		const char *outcome = json_string_value(json_object_get(a, "outcome"));
		bool open = outcome && strcmp(outcome, "pending") == 0;
		if (strcmp(what, "granted") == 0 || strcmp(what, "denied") == 0) {
			json_t *v = json_pack("{s:s, s:O, s:O, s:O?, s:O?, s:O?}", "vote", what + 0, "seq",
					      json_object_get(e, "seq"), "at", at, "by", json_object_get(d, "by"),
					      "roles", json_object_get(d, "roles"), "reason",
					      json_object_get(d, "reason"));
			json_t *edit = json_object_get(d, "args");
			if (v && json_is_object(edit))
				put(x, v, "edited_args", json_incref(edit));
			push(x, json_object_get(a, "votes"), v);
			json_int_t need = json_integer_value(json_object_get(json_object_get(a, "need"), "count"));
			size_t grants = 0, k;
			json_t *vv;
			json_array_foreach(json_object_get(a, "votes"), k, vv)
				grants += strcmp(json_string_value(json_object_get(vv, "vote")), "granted") == 0;
			bool decided = what[0] == 'd' || (json_int_t)grants >= (need > 0 ? need : 1);
			if (open && decided) {
				put(x, a, "outcome", json_string(what[0] == 'd' ? "denied" : "granted"));
				put(x, a, "decided_at", json_incref(at));
				json_t *who = json_array();
				json_array_foreach(json_object_get(a, "votes"), k, vv)
					if (who && json_object_get(vv, "by"))
						push(x, who, json_incref(json_object_get(vv, "by")));
				put(x, a, "decided_by", who);
				if (what[0] == 'g' && json_is_object(edit))
					put(x, a, "edited_args", json_incref(edit));
			}
		} else if (strcmp(what, "refused") == 0) {
			push(x, json_object_get(a, "refused"),
			     json_pack("{s:O, s:O, s:O?, s:O?}", "seq", json_object_get(e, "seq"), "at", at, "by",
				       json_object_get(d, "by"), "reason", json_object_get(d, "reason")));
		} else if (strcmp(what, "alert") == 0) {
			push(x, json_object_get(a, "alerts"),
			     json_pack("{s:O, s:O, s:O?}", "seq", json_object_get(e, "seq"), "at", at, "webhook",
				       json_object_get(d, "webhook")));
		} else if (strcmp(what, "expired") == 0 && open) {
			const char *ot = json_string_value(json_object_get(d, "on_timeout"));
			put(x, a, "on_timeout", json_string(ot ? ot : "?"));
			if (ot == NULL || strcmp(ot, "halt") != 0) {
				put(x, a, "outcome", json_string("expired"));
				put(x, a, "decided_at", json_incref(at));
			}
		}
	}
	/* the exact call sent after a grant: the tool call with the request's key */
	json_array_foreach(list, i, e) {
		const char *key = NULL;
		size_t k;
		json_t *w;
		json_t *req = NULL;
		json_array_foreach(x->approvals, k, w) {
			const json_t *d = json_object_get(w, "data");
			if (json_equal(json_object_get(w, "seq"), json_object_get(e, "requested_seq")))
				req = (json_t *)d;
		}
		key = json_string_value(json_object_get(req, "key"));
		json_t *lists[2] = {x->writes, x->reads};
		for (int l = 0; key && l < 2; l++)
			json_array_foreach(lists[l], k, w) {
				const char *wk = json_string_value(json_object_get(w, "key"));
				if (wk && strcmp(wk, key) == 0 && json_is_null(json_object_get(e, "sent")) &&
				    json_integer_value(json_object_get(w, "seq")) >
					    json_integer_value(json_object_get(e, "requested_seq")))
					put(x, e, "sent", json_pack("{s:O, s:O?, s:O?}", "seq", json_object_get(w, "seq"),
								    "args", json_object_get(w, "args"), "outcome",
								    json_object_get(w, "outcome")));
			}
	}
	put(x, x->doc, "approval_summary", list);
	list = NULL;
out:
	json_decref(list);
	json_decref(by_id);
}

/* Builds the export of run id into *out. */
static int build(rein_store *st, const rein_run_row *row, json_t **out, rein_err *e)
{
	exp_ctx x = {.doc = json_object(), .decisions = json_array(), .approvals = json_array(),
		     .reads = json_array(), .writes = json_array(), .open = json_array(),
		     .intents = json_object()};
	int rc = REIN_OK;
	if (!x.doc || !x.decisions || !x.approvals || !x.reads || !x.writes || !x.open || !x.intents) {
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
	audit_approvals(&x);
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
	json_decref(x.intents);
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

/* A label {sources, readers, trusted} in words. */
static void md_label(FILE *f, const json_t *l)
{
	fputs("sources ", f);
	md_json(f, json_object_get(l, "sources"));
	fputs(", readers ", f);
	md_json(f, json_object_get(l, "readers"));
	const json_t *t = json_object_get(l, "trusted");
	if (json_is_boolean(t))
		fprintf(f, ", %s", json_is_true(t) ? "**trusted**" : "**not trusted**");
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
			if (json_object_get(e, "labels")) {
				fputs("  - its prompt read ", f);
				md_json(f, json_object_get(e, "reads"));
				fputs(": ", f);
				md_label(f, json_object_get(e, "labels"));
				fputc('\n', f);
			}
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

/* "- seq N, step `S`, at TIME: ", the start of the line of a recorded event. */
static void md_item(FILE *f, const json_t *e)
{
	fprintf(f, "- seq %lld, step `%s`, at ", (long long)json_integer_value(json_object_get(e, "seq")),
		str(e, "step", "(run)"));
	md_time(f, e, "at");
	fputs(": ", f);
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
		md_item(f, e);
		md_json(f, json_object_get(e, field));
		fputc('\n', f);
	}
}

/* Each policy decision, then the provenance of the data it decided on. */
static void md_decisions(FILE *f, const json_t *list)
{
	size_t i;
	json_t *e;
	if (json_array_size(list) == 0) {
		fputs("none recorded\n", f);
		return;
	}
	json_array_foreach(list, i, e) {
		const json_t *d = json_object_get(e, "decision");
		md_item(f, e);
		fprintf(f, "**%s** `%s` by rules ", str(d, "decision", "?"), str(d, "tool", "?"));
		md_json(f, json_object_get(d, "rules"));
		fputs(", reasons ", f);
		md_json(f, json_object_get(d, "reasons"));
		fprintf(f, ", policy version `%.12s`\n", str(d, "policy_version", "?"));
		const json_t *pv = json_object_get(e, "provenance");
		if (!json_is_object(pv))
			continue;
		if (json_is_true(json_object_get(pv, "agent"))) {
			fputs("  - proposed by an agent whose context held ", f);
			if (json_is_object(json_object_get(pv, "context")))
				md_label(f, json_object_get(pv, "context"));
			else
				md_json(f, json_object_get(pv, "context"));
			fputc('\n', f);
		}
		const char *k;
		const json_t *l;
		json_object_foreach((json_t *)json_object_get(pv, "args"), k, l) {
			fprintf(f, "  - argument `%s`: ", k);
			md_label(f, l);
			fputc('\n', f);
		}
	}
}

/* The approvals: the exact action, each vote, refusals, the outcome, what was sent. */
static void md_approvals(FILE *f, const json_t *list)
{
	size_t i, k;
	json_t *a, *v;
	json_array_foreach(list, i, a) {
		fprintf(f, "- `%s`, step `%s`: **%s**; action `%s` args ", str(a, "id", "?"), str(a, "step", "?"),
			str(a, "outcome", "?"), str(a, "tool", "?"));
		md_json(f, json_object_get(a, "args"));
		fprintf(f, " (action hash `%.16s`, policy version `%.12s`, risk %s), requested at ",
			str(a, "action_hash", "?"), str(a, "policy_version", "?"), str(a, "risk", "?"));
		md_time(f, a, "requested_at");
		fputs(", needs ", f);
		md_json(f, json_object_get(a, "need"));
		fputc('\n', f);
		json_array_foreach(json_object_get(a, "votes"), k, v) {
			fprintf(f, "  - %s by %s (roles ", str(v, "vote", "?"), str(v, "by", "?"));
			md_json(f, json_object_get(v, "roles"));
			fputs(") at ", f);
			md_time(f, v, "at");
			if (json_is_string(json_object_get(v, "reason")))
				fprintf(f, ": %s", str(v, "reason", ""));
			if (json_object_get(v, "edited_args")) {
				fputs(", **edited** args to ", f);
				md_json(f, json_object_get(v, "edited_args"));
			}
			fputc('\n', f);
		}
		json_array_foreach(json_object_get(a, "refused"), k, v) {
			fprintf(f, "  - refused a token of %s at ", str(v, "by", "(unknown)"));
			md_time(f, v, "at");
			fprintf(f, ": %s\n", str(v, "reason", "?"));
		}
		if (json_is_integer(json_object_get(a, "decided_at"))) {
			fputs("  - decided at ", f);
			md_time(f, a, "decided_at");
			fputc('\n', f);
		}
		const json_t *sent = json_object_get(a, "sent");
		if (json_is_object(sent)) {
			fprintf(f, "  - sent (seq %lld) with args ", (long long)json_integer_value(json_object_get(sent, "seq")));
			md_json(f, json_object_get(sent, "args"));
			fprintf(f, ": %s\n", str(sent, "outcome", "?"));
		}
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
	md_decisions(f, json_object_get(d, "policy_decisions"));
	fputs("\n## Approvals\n\n", f);
	if (json_array_size(json_object_get(d, "approval_summary")))
		md_approvals(f, json_object_get(d, "approval_summary"));
	else
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
