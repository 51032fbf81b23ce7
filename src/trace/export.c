/*
 * The online exporter (contract in trace.h): the fold of durable events into
 * traces on the runner's thread, a bounded queue of finished traces, and a
 * thread that POSTs them. The runner's thread only ever takes the lock for
 * a push or a count, never across I/O, so the collector cannot slow a run.
 */
#include <assert.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "trace.h"

enum { BATCH = 8 };

typedef struct pending {
	char *run_id;
	rein_trace *t; /* NULL: skipped (not seen from its start, or a bad log) */
} pending;

struct rein_otlp_exporter {
	rein_otlp_cfg cfg;
	bool threaded;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	rein_trace **q;
	size_t qn, qmax;
	bool stop;
	int64_t deadline;
	int64_t retry_at; /* after a failure: no request before (ms since the epoch) */
	rein_otlp_exporter_stats st;
	/* the runner's thread only */
	pending *p;
	size_t np, capp;
};

static int cfg_copy(rein_otlp_cfg *dst, const rein_otlp_cfg *src)
{
	*dst = (rein_otlp_cfg){.max_attempts = src->max_attempts,
			       .max_backoff_ms = src->max_backoff_ms,
			       .timeout_ms = src->timeout_ms};
	dst->url = rein_strdup(src->url);
	dst->headers = src->nheaders ? rein_calloc(src->nheaders, sizeof *dst->headers) : NULL;
	if (dst->url == NULL || (src->nheaders && dst->headers == NULL))
		return REIN_ENOMEM;
	for (; dst->nheaders < src->nheaders; dst->nheaders++)
		if ((dst->headers[dst->nheaders] = rein_strdup(src->headers[dst->nheaders])) == NULL)
			return REIN_ENOMEM;
	return REIN_OK;
}

/* Encodes and posts k traces (freed), then counts the outcome. */
static int post_batch(rein_otlp_exporter *x, rein_trace **b, size_t k)
{
	json_t *req = NULL;
	rein_otlp_stats hs = {0};
	long ns = 0;
	for (size_t i = 0; i < k; i++) {
		size_t n;
		rein_trace_spans(b[i], &n);
		ns += (long)n;
	}
	int rc = rein_otlp_encode((const rein_trace *const *)b, k, &req, NULL);
	if (rc == REIN_OK)
		rc = rein_otlp_post(&x->cfg, req, ns, &hs, NULL);
	json_decref(req);
	for (size_t i = 0; i < k; i++)
		rein_trace_free(b[i]);
	pthread_mutex_lock(&x->mu);
	if (rc == REIN_OK)
		x->st.exported += (long)k;
	else
		x->st.failed += (long)k;
	x->st.http.requests += hs.requests;
	x->st.http.retries += hs.retries;
	x->st.http.spans_sent += hs.spans_sent;
	x->st.http.spans_rejected += hs.spans_rejected;
	pthread_mutex_unlock(&x->mu);
	return rc;
}

/* Takes up to BATCH traces off the queue into b (mu held). */
static size_t take(rein_otlp_exporter *x, rein_trace **b)
{
	size_t k = x->qn < BATCH ? x->qn : BATCH;
	memcpy(b, x->q, k * sizeof *b);
	memmove(x->q, x->q + k, (x->qn - k) * sizeof *x->q);
	x->qn -= k;
	return k;
}

static void *worker(void *arg)
{
	rein_otlp_exporter *x = arg;
	rein_trace *b[BATCH];
	pthread_mutex_lock(&x->mu);
	for (;;) {
		int64_t now = rein_clock_now(&rein_clock_system);
		if (x->stop && (x->qn == 0 || now >= x->deadline))
			break;
		if (x->qn == 0) {
			pthread_cond_wait(&x->cv, &x->mu);
			continue;
		}
		if (!x->stop && now < x->retry_at) {
			/* a collector that failed is left alone for a while (the queue
			 * holds or drops meanwhile), so a dead one costs no CPU */
			struct timespec ts = {.tv_sec = x->retry_at / 1000,
					      .tv_nsec = (x->retry_at % 1000) * 1000000};
			pthread_cond_timedwait(&x->cv, &x->mu, &ts);
			continue;
		}
		size_t k = take(x, b);
		pthread_mutex_unlock(&x->mu);
		int rc = post_batch(x, b, k);
		pthread_mutex_lock(&x->mu);
		if (rc != REIN_OK)
			x->retry_at = rein_clock_now(&rein_clock_system) + 1000;
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

int rein_otlp_exporter_new(const rein_otlp_cfg *cfg, size_t queue_max, bool threaded,
			   rein_otlp_exporter **out, rein_err *err)
{
	assert(cfg != NULL && cfg->url != NULL && queue_max >= 1 && out != NULL);
	rein_otlp_exporter *x = rein_calloc(1, sizeof *x);
	int rc = REIN_OK;
	if (x == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	x->qmax = queue_max;
	x->q = rein_calloc(queue_max, sizeof *x->q);
	if (x->q == NULL || cfg_copy(&x->cfg, cfg) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if (threaded && pthread_create(&x->th, NULL, worker, x) != 0) {
		rc = rein_err_set(err, REIN_EIO, "cannot start the trace exporter's thread");
		goto out;
	}
	x->threaded = threaded;
	*out = x;
	x = NULL;
out:
	rein_otlp_exporter_free(x, 0, NULL);
	return rc;
}

static pending *pending_of(rein_otlp_exporter *x, const char *run_id, bool *fresh)
{
	for (size_t i = 0; i < x->np; i++)
		if (strcmp(x->p[i].run_id, run_id) == 0)
			return &x->p[i];
	if (x->np == x->capp) {
		size_t cap = x->capp ? 2 * x->capp : 8;
		pending *p = rein_realloc(x->p, cap * sizeof *p);
		if (p == NULL)
			return NULL;
		x->p = p;
		x->capp = cap;
	}
	pending *p = &x->p[x->np];
	*p = (pending){.run_id = rein_strdup(run_id)};
	if (p->run_id == NULL)
		return NULL;
	x->np++;
	*fresh = true;
	return p;
}

/* Counts a run as skipped or dropped (no trace to send). */
static void count(rein_otlp_exporter *x, long *field)
{
	pthread_mutex_lock(&x->mu);
	(*field)++;
	pthread_mutex_unlock(&x->mu);
}

void rein_otlp_exporter_commit(void *ud, const rein_event_row *rows, size_t n)
{
	rein_otlp_exporter *x = ud;
	assert(x != NULL && (rows != NULL || n == 0));
	for (size_t i = 0; i < n; i++) {
		const rein_event_row *ev = &rows[i];
		bool fresh = false;
		pending *p = pending_of(x, ev->run_id, &fresh);
		if (p == NULL) { /* out of memory: this run is left to the backfill */
			if (strcmp(ev->type, "run.ended") == 0)
				count(x, &x->st.dropped);
			continue;
		}
		if (fresh && strcmp(ev->type, "run.started") == 0)
			p->t = rein_trace_new(ev->run_id);
		if (p->t != NULL && rein_trace_add(p->t, ev, NULL) != REIN_OK) {
			rein_trace_free(p->t);
			p->t = NULL;
		}
		if (strcmp(ev->type, "run.ended") != 0)
			continue;
		if (p->t == NULL) {
			count(x, &x->st.skipped);
		} else {
			pthread_mutex_lock(&x->mu);
			if (x->qn < x->qmax) {
				x->q[x->qn++] = p->t;
				x->st.queued++;
				pthread_cond_signal(&x->cv);
			} else {
				x->st.dropped++;
				rein_trace_free(p->t);
			}
			pthread_mutex_unlock(&x->mu);
		}
		rein_free(p->run_id);
		*p = x->p[--x->np];
	}
}

void rein_otlp_exporter_flush(rein_otlp_exporter *x)
{
	assert(x != NULL);
	rein_trace *b[BATCH];
	for (;;) {
		pthread_mutex_lock(&x->mu);
		size_t k = take(x, b);
		pthread_mutex_unlock(&x->mu);
		if (k == 0)
			break;
		post_batch(x, b, k);
	}
}

void rein_otlp_exporter_stats_get(rein_otlp_exporter *x, rein_otlp_exporter_stats *out)
{
	assert(x != NULL && out != NULL);
	pthread_mutex_lock(&x->mu);
	*out = x->st;
	pthread_mutex_unlock(&x->mu);
}

void rein_otlp_exporter_free(rein_otlp_exporter *x, int64_t drain_ms,
			     rein_otlp_exporter_stats *stats)
{
	if (x == NULL)
		return;
	if (x->threaded) {
		pthread_mutex_lock(&x->mu);
		x->stop = true;
		x->deadline = rein_clock_now(&rein_clock_system) + drain_ms;
		pthread_cond_signal(&x->cv);
		pthread_mutex_unlock(&x->mu);
		pthread_join(x->th, NULL);
	}
	for (size_t i = 0; i < x->qn; i++)
		rein_trace_free(x->q[i]);
	x->st.dropped += (long)x->qn;
	for (size_t i = 0; i < x->np; i++) {
		rein_free(x->p[i].run_id);
		rein_trace_free(x->p[i].t);
	}
	if (stats)
		*stats = x->st;
	rein_free(x->p);
	rein_free(x->q);
	rein_otlp_cfg_clear(&x->cfg);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
	rein_free(x);
}
