/*
 * The high-risk alert webhook (docs/approvals.md). After the commit that
 * recorded an approval.alert, the runner POSTs {type, run, step, id, at} to
 * the workflow's alerts.webhook (else REIN_ALERT_WEBHOOK), on a thread of its own (its own io loop), retried with
 * exponential backoff (4 attempts: 0.2, 0.4, 0.8 s apart; 5 s each), so the
 * run never waits for it: a failing webhook leaves the run waiting as it
 * should. rein_runner_free waits for the posts still going (bounded by the
 * attempts). Outcomes go to stderr: the log holds the alert itself.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner_int.h"
#include "io.h"

struct runner_alert {
	pthread_t th;
	char *url;
	char *body;
	struct runner_alert *next;
};

typedef struct post_state {
	bool done;
	long status;
	int error;
} post_state;

static void post_done(void *ud, const rein_http_resp *resp)
{
	post_state *p = ud;
	p->done = true;
	p->error = resp->error;
	p->status = resp->status;
}

static void nap_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void *post_thread(void *arg)
{
	struct runner_alert *al = arg;
	rein_http_header h[] = {{"Content-Type", "application/json"}};
	rein_http_req req = {.method = "POST", .url = al->url, .headers = h, .nheaders = 1,
			     .body = al->body, .body_len = strlen(al->body), .timeout_ms = 5000};
	int64_t backoff = 200;
	bool ok = false;
	for (int attempt = 1; attempt <= 4 && !ok; attempt++) {
		rein_io *io = NULL;
		rein_err e = {0};
		post_state p = {0};
		if (rein_io_new(&io, &e) == REIN_OK && rein_http_start(io, &req, post_done, &p, NULL, &e) == REIN_OK)
			while (!p.done)
				rein_io_wait(io, 100);
		rein_io_free(io);
		ok = p.done && p.error == REIN_HTTP_OK && p.status >= 200 && p.status < 300;
		if (!ok && attempt < 4) {
			nap_ms(backoff);
			backoff *= 2;
		}
		if (!ok && attempt == 4)
			fprintf(stderr, "rein: the alert webhook failed 4 times (%s): %s\n",
				p.done && p.error == REIN_HTTP_OK ? "an HTTP error status" : "no answer",
				al->body);
	}
	return NULL;
}

void runner_alerts_note(rein_runner *rn, const rein_event_row *rows, size_t n)
{
	const char *env = getenv("REIN_ALERT_WEBHOOK");
	for (size_t i = 0; i < n; i++) {
		const rein_spec *sp = runner_spec_of(rn, rows[i].run_id);
		const char *url = sp && sp->alert_webhook ? sp->alert_webhook : env;
		if (strcmp(rows[i].type, "approval.alert") != 0 || rows[i].payload == NULL ||
		    url == NULL || *url == '\0')
			continue; /* the workflow's alerts.webhook, else the environment's */
		rein_err e = {0};
		json_t *d = rein_json_parse(rows[i].payload, strlen(rows[i].payload), &e);
		json_t *body = json_pack("{s:s, s:s, s:s?, s:O?, s:I}", "type", "approval.alert", "run",
					 rows[i].run_id, "step", rows[i].step, "id",
					 json_object_get(d, "id"), "at", (json_int_t)rows[i].at);
		struct runner_alert *al = body ? rein_calloc(1, sizeof *al) : NULL;
		if (al && ((al->url = rein_strdup(url)) == NULL || (al->body = rein_json_dump(body)) == NULL ||
			   pthread_create(&al->th, NULL, post_thread, al) != 0)) {
			rein_free(al->url);
			rein_free(al->body);
			rein_free(al);
			al = NULL;
		}
		if (al) {
			al->next = rn->alerts;
			rn->alerts = al;
		} else {
			fprintf(stderr, "rein: the alert of run %s could not be posted (out of memory)\n",
				rows[i].run_id);
		}
		json_decref(body);
		json_decref(d);
	}
}

void runner_alerts_wait(rein_runner *rn)
{
	while (rn->alerts) {
		struct runner_alert *al = rn->alerts;
		rn->alerts = al->next;
		pthread_join(al->th, NULL);
		rein_free(al->url);
		rein_free(al->body);
		rein_free(al);
	}
}
