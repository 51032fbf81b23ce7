/*
 * The io layer against the loopback tool server (build/asan/tools/toolserver,
 * or $REIN_TOOLSERVER): echo with headers and body, every error class,
 * Retry-After, cancel, many calls at once, and freeing the loop with calls in
 * flight. Only generous timeouts depend on time.
 */
#include "testlib.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include "io.h"

static test_server srv;

/* What one call reported, copied out of the callback. */
typedef struct res {
	int ncalls; /* times the callback ran: must end at 1 */
	int error;
	long status;
	char *body;
	size_t body_len;
	int64_t retry_after_ms, elapsed_ms;
	char ctype[128];
	char errmsg[256];
	bool has_upper_header;
} res;

static void on_done(void *ud, const rein_http_resp *r)
{
	res *o = ud;
	o->ncalls++;
	o->error = r->error;
	o->status = r->status;
	o->body = rein_strndup(r->body, r->body_len);
	o->body_len = r->body_len;
	o->retry_after_ms = r->retry_after_ms;
	o->elapsed_ms = r->elapsed_ms;
	snprintf(o->errmsg, sizeof o->errmsg, "%s", r->errmsg);
	for (size_t i = 0; i < r->nheaders; i++) {
		for (const char *p = r->headers[i].name; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				o->has_upper_header = true;
		if (strcmp(r->headers[i].name, "content-type") == 0)
			snprintf(o->ctype, sizeof o->ctype, "%s", r->headers[i].value);
	}
}

static void res_free(res *r) { rein_free(r->body); }

static char *url(const char *path)
{
	return rein_sprintf("http://127.0.0.1:%d%s", srv.port, path);
}

/* Runs the loop until *count reaches want or 60 s pass. */
static void wait_for(rein_io *io, const int *count, int want)
{
	int64_t deadline = rein_clock_now(&rein_clock_system) + 60000;
	while (*count < want && rein_clock_now(&rein_clock_system) < deadline)
		rein_io_wait(io, 1000);
	assert_int_equal(*count, want);
}

/* One call, run to its end. */
static void call(rein_io *io, rein_http_req *req, const char *path, res *out)
{
	char *u = url(path);
	req->url = u;
	memset(out, 0, sizeof *out);
	rein_err err = {0};
	assert_int_equal(rein_http_start(io, req, on_done, out, NULL, &err), REIN_OK);
	assert_int_equal(out->ncalls, 0); /* never from inside start */
	wait_for(io, &out->ncalls, 1);
	assert_int_equal(rein_io_inflight(io), 0);
	rein_free(u);
}

static void simple(rein_io *io, const char *path, res *out)
{
	rein_http_req req = {.method = "GET", .timeout_ms = 20000};
	call(io, &req, path, out);
}

/* ---- server ------------------------------------------------------------ */

static int server_start(void **state)
{
	return test_server_up(&srv, "toolserver");
}

static int server_stop(void **state)
{
	test_server_down(&srv);
	return 0;
}

static int io_setup(void **state)
{
	rein_io *io = NULL;
	rein_err err = {0};
	if (rein_io_new(&io, &err) != REIN_OK)
		return -1;
	*state = io;
	return 0;
}

static int io_teardown(void **state)
{
	rein_io_free(*state);
	return 0;
}

/* ---- cases ------------------------------------------------------------- */

static void test_ok_echo(void **state)
{
	rein_io *io = *state;
	char key[64];
	assert_int_equal(rein_random_id("k-", key, sizeof key), REIN_OK);
	rein_http_header h[] = {{"Idempotency-Key", key}, {"Content-Type", "application/json"}};
	const char *body = "{\"x\": [1, 2, \"three\"]}";
	rein_http_req req = {.method = "POST", .headers = h, .nheaders = 2, .body = body,
			     .body_len = strlen(body), .timeout_ms = 20000};
	res r;
	int64_t t0 = rein_clock_now(&rein_clock_system);
	call(io, &req, "/tool/ok", &r);
	int64_t t1 = rein_clock_now(&rein_clock_system);
	assert_int_equal(r.ncalls, 1);
	assert_int_equal(r.error, REIN_HTTP_OK);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "application/json");
	assert_false(r.has_upper_header);
	assert_int_equal(r.retry_after_ms, -1);
	/* the elapsed time is of this request: within the time the test waited for it */
	assert_in_range(r.elapsed_ms, 0, t1 - t0 + 1);
	json_t *j = J(r.body);
	json_t *want = json_pack("{s:b,s:{s:[i,i,s]},s:s,s:i}", "ok", 1, "args", "x", 1, 2,
				 "three", "key", key, "count", 1);
	assert_true(json_equal(j, want));
	json_decref(j);
	json_decref(want);
	res_free(&r);

	/* the same key again: seen twice, still one effect */
	call(io, &req, "/tool/delay:20", &r);
	assert_int_equal(r.status, 200);
	j = J(r.body);
	assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
	json_decref(j);
	res_free(&r);
	simple(io, "/control/stats", &r);
	j = J(r.body);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "by_key"), key)), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "effects"), key)), 1);
	json_decref(j);
	res_free(&r);

	/* the mode may come as a header; a body without a Content-Type is fine */
	rein_http_header xm[] = {{"X-Mode", "badschema"}};
	rein_http_req req2 = {.method = "PUT", .headers = xm, .nheaders = 1, .body = "1",
			      .body_len = 1};
	call(io, &req2, "/anything", &r);
	assert_int_equal(r.error, REIN_HTTP_OK);
	assert_string_equal(r.body, "{\"unexpected\": 1}");
	res_free(&r);
	simple(io, "/tool/malformed", &r);
	assert_int_equal(r.error, REIN_HTTP_OK);
	assert_string_equal(r.body, "{\"ok\": tru");
	res_free(&r);
}

static void test_status_codes(void **state)
{
	rein_io *io = *state;
	static const long codes[] = {400, 404, 409, 500, 502, 503};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		char path[64];
		snprintf(path, sizeof path, "/tool/status:%ld", codes[i]);
		res r;
		simple(io, path, &r);
		assert_int_equal(r.error, REIN_HTTP_OK);
		assert_int_equal(r.status, codes[i]);
		json_t *j = J(r.body);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"),
								     "status")),
				 codes[i]);
		json_decref(j);
		res_free(&r);
	}
}

static void test_retry_after(void **state)
{
	rein_io *io = *state;
	res r;
	simple(io, "/tool/retry-after:7", &r);
	assert_int_equal(r.error, REIN_HTTP_OK);
	assert_int_equal(r.status, 429);
	assert_int_equal(r.retry_after_ms, 7000);
	res_free(&r);
	/* an HTTP-date 30 s ahead: whole seconds, so 29..30 s, and slack for a slow run */
	simple(io, "/tool/retry-after-date:30", &r);
	assert_int_equal(r.status, 429);
	assert_true(r.retry_after_ms >= 20000 && r.retry_after_ms <= 31000);
	res_free(&r);
	/* a date in the past means "now" */
	simple(io, "/tool/retry-after-date:-100", &r);
	assert_int_equal(r.retry_after_ms, 0);
	res_free(&r);
	simple(io, "/tool/retry-after:soon", &r);
	assert_int_equal(r.retry_after_ms, -1);
	res_free(&r);
}

static void test_connect_refused(void **state)
{
	rein_io *io = *state;
	/* a port that was free a moment ago: bind, learn it, close */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	char *u = rein_sprintf("http://127.0.0.1:%d/tool/ok", ntohs(a.sin_port));
	rein_http_req req = {.url = u, .timeout_ms = 20000};
	res r = {0};
	rein_err err = {0};
	assert_int_equal(rein_http_start(io, &req, on_done, &r, NULL, &err), REIN_OK);
	assert_int_equal(r.ncalls, 0);
	wait_for(io, &r.ncalls, 1);
	assert_int_equal(r.error, REIN_HTTP_CONNECT);
	assert_true(r.errmsg[0] != '\0');
	assert_int_equal(r.status, 0);
	res_free(&r);
	rein_free(u);

	/* an unresolvable name */
	rein_http_req req2 = {.url = "http://no-such-host.invalid/", .timeout_ms = 20000};
	memset(&r, 0, sizeof r);
	assert_int_equal(rein_http_start(io, &req2, on_done, &r, NULL, &err), REIN_OK);
	wait_for(io, &r.ncalls, 1);
	assert_int_equal(r.error, REIN_HTTP_CONNECT);
	res_free(&r);

	/* refused up front: not a URL we call */
	rein_http_req req3 = {.url = "file:///etc/passwd"};
	assert_int_equal(rein_http_start(io, &req3, on_done, &r, NULL, &err), REIN_EINVAL);
	rein_http_header bad[] = {{"X-Evil", "a\r\nInjected: 1"}};
	rein_http_req req4 = {.url = "http://127.0.0.1:1/", .headers = bad, .nheaders = 1};
	assert_int_equal(rein_http_start(io, &req4, on_done, &r, NULL, &err), REIN_EINVAL);
	assert_int_equal(rein_io_inflight(io), 0);
}

static void test_timeouts(void **state)
{
	rein_io *io = *state;
	const char *paths[] = {"/tool/hang", "/tool/drip"};
	for (int i = 0; i < 2; i++) {
		rein_http_req req = {.timeout_ms = 1500};
		res r;
		call(io, &req, paths[i], &r);
		assert_int_equal(r.error, REIN_HTTP_TIMEOUT);
		assert_true(r.elapsed_ms >= 1400);
		assert_int_equal(r.status, 0);
		assert_int_equal(r.body_len, 0);
		res_free(&r);
	}
}

static void test_too_large(void **state)
{
	rein_io *io = *state;
	/* with a Content-Length (refused before reading) and without (the cap
	 * in the write callback) */
	const char *paths[] = {"/tool/huge:200000", "/tool/stream:200000"};
	for (int i = 0; i < 2; i++) {
		rein_http_req req = {.timeout_ms = 20000, .max_response_bytes = 1000};
		res r;
		call(io, &req, paths[i], &r);
		assert_int_equal(r.error, REIN_HTTP_TOO_LARGE);
		res_free(&r);
		/* the same with room enough: complete and valid JSON */
		req.max_response_bytes = 200000;
		call(io, &req, paths[i], &r);
		assert_int_equal(r.error, REIN_HTTP_OK);
		assert_int_equal(r.body_len, 200000);
		json_t *j = J(r.body);
		json_decref(j);
		res_free(&r);
	}
}

static void test_protocol(void **state)
{
	rein_io *io = *state;
	const char *paths[] = {"/tool/cut", "/tool/close", "/tool/garbage"};
	for (int i = 0; i < 3; i++) {
		res r;
		simple(io, paths[i], &r);
		if (r.error != REIN_HTTP_PROTOCOL)
			fprintf(stderr, "%s: %s: %s\n", paths[i], rein_http_error_name(r.error),
				r.errmsg);
		assert_int_equal(r.error, REIN_HTTP_PROTOCOL);
		res_free(&r);
	}
	/* the connection cache survives broken connections */
	res r;
	simple(io, "/tool/ok", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

static void test_cancel(void **state)
{
	rein_io *io = *state;
	char *u = url("/tool/hang");
	rein_http_req req = {.url = u, .timeout_ms = 20000};
	rein_err err = {0};
	res a = {0}, b = {0};
	rein_http_call *ca = NULL, *cb = NULL;
	assert_int_equal(rein_http_start(io, &req, on_done, &a, &ca, &err), REIN_OK);
	assert_int_equal(rein_http_start(io, &req, on_done, &b, &cb, &err), REIN_OK);
	/* a: cancelled before the loop ever ran; b: once it is on the wire */
	rein_http_cancel(ca);
	assert_int_equal(a.ncalls, 0); /* never from inside cancel */
	rein_io_wait(io, 300);
	rein_http_cancel(cb);
	assert_int_equal(b.ncalls, 0);
	wait_for(io, &b.ncalls, 1);
	wait_for(io, &a.ncalls, 1);
	assert_int_equal(a.error, REIN_HTTP_CANCELLED);
	assert_int_equal(b.error, REIN_HTTP_CANCELLED);
	assert_int_equal(rein_io_inflight(io), 0);
	/* nothing more comes */
	rein_io_wait(io, 100);
	assert_int_equal(a.ncalls, 1);
	assert_int_equal(b.ncalls, 1);
	res_free(&a);
	res_free(&b);
	rein_free(u);
	assert_int_equal(rein_io_wait(io, 0), 0);
}

typedef struct selfcancel {
	rein_http_call *call;
	int n;
} selfcancel;

static void on_done_cancel_self(void *ud, const rein_http_resp *r)
{
	selfcancel *x = ud;
	rein_http_cancel(x->call); /* too late: a no-op, not a second callback */
	x->n++;
}

static void test_cancel_in_callback(void **state)
{
	rein_io *io = *state;
	char *u = url("/tool/ok");
	rein_http_req req = {.url = u};
	selfcancel x = {0};
	rein_err err = {0};
	assert_int_equal(rein_http_start(io, &req, on_done_cancel_self, &x, &x.call, &err),
			 REIN_OK);
	wait_for(io, &x.n, 1);
	rein_io_wait(io, 100);
	assert_int_equal(x.n, 1);
	assert_int_equal(rein_io_inflight(io), 0);
	rein_free(u);
}

#define NCONC 2000

typedef struct tally {
	int done, ok, cancelled, bad;
} tally;

static void on_tally(void *ud, const rein_http_resp *r)
{
	tally *t = ud;
	t->done++;
	if (r->error == REIN_HTTP_OK && r->status == 200 && r->body_len > 0)
		t->ok++;
	else if (r->error == REIN_HTTP_CANCELLED)
		t->cancelled++;
	else if (t->bad++ < 5)
		fprintf(stderr, "call: %s %ld %s\n", rein_http_error_name(r->error), r->status,
			r->errmsg);
}

static void test_concurrent(void **state)
{
	rein_io *io = *state;
	char *u = url("/tool/delay:50");
	rein_http_req req = {.method = "POST", .url = u, .body = "{}", .body_len = 2,
			     .timeout_ms = 60000};
	tally t = {0};
	rein_err err = {0};
	for (int i = 0; i < NCONC; i++)
		assert_int_equal(rein_http_start(io, &req, on_tally, &t, NULL, &err), REIN_OK);
	assert_int_equal(rein_io_inflight(io), NCONC);
	assert_int_equal(t.done, 0);
	wait_for(io, &t.done, NCONC);
	assert_int_equal(t.ok, NCONC);
	assert_int_equal(rein_io_inflight(io), 0);
	rein_free(u);
}

static void test_free_inflight(void **state)
{
	rein_io *io = NULL;
	rein_err err = {0};
	assert_int_equal(rein_io_new(&io, &err), REIN_OK);
	tally t = {0};
	const char *paths[] = {"/tool/hang", "/tool/drip", "/tool/delay:60000"};
	rein_http_call *calls[60];
	for (int i = 0; i < 60; i++) {
		char *u = url(paths[i % 3]);
		rein_http_req req = {.url = u, .timeout_ms = 60000};
		assert_int_equal(rein_http_start(io, &req, on_tally, &t, &calls[i], &err), REIN_OK);
		if (i % 10 == 0)
			rein_http_cancel(calls[i]); /* their callbacks come from the loop */
		rein_free(u);
	}
	wait_for(io, &t.done, 6);
	rein_io_wait(io, 300);
	assert_int_equal(t.done, 6);
	for (int i = 5; i < 60; i += 10)
		rein_http_cancel(calls[i]); /* cancel still pending when the loop goes */
	assert_int_equal(t.done, 6);
	assert_int_equal(rein_io_inflight(io), 54);
	rein_io_free(io); /* every other callback runs here, once, cancelled */
	assert_int_equal(t.done, 60);
	assert_int_equal(t.cancelled, 60);
}

/* More calls than one curl multi handle ("lane") takes: cancels and the final
 * free reach calls in every lane, and each callback runs once. */
static void test_free_many_lanes(void **state)
{
	enum { N = 700 };
	rein_io *io = NULL;
	rein_err err = {0};
	assert_int_equal(rein_io_new(&io, &err), REIN_OK);
	tally t = {0};
	char *u = url("/tool/delay:60000");
	rein_http_req req = {.url = u, .timeout_ms = 60000};
	static rein_http_call *calls[N];
	for (int i = 0; i < N; i++)
		assert_int_equal(rein_http_start(io, &req, on_tally, &t, &calls[i], &err), REIN_OK);
	rein_free(u);
	for (int i = 0; i < N; i += 100)
		rein_http_cancel(calls[i]);
	wait_for(io, &t.done, N / 100);
	assert_int_equal(rein_io_inflight(io), N - N / 100);
	rein_io_free(io);
	assert_int_equal(t.done, N);
	assert_int_equal(t.cancelled, N);
}

/* A completion that runs early in a loop turn must still end the wait at
 * once, not when the wait's own timeout fires. */
static void test_wait_returns(void **state)
{
	rein_io *io = *state;
	char *u = url("/tool/ok");
	int64_t t0 = rein_clock_now(&rein_clock_system);
	for (int i = 0; i < 40; i++) {
		rein_http_req req = {.url = u, .timeout_ms = 20000};
		res r = {0};
		rein_err err = {0};
		assert_int_equal(rein_http_start(io, &req, on_done, &r, NULL, &err), REIN_OK);
		while (r.ncalls == 0)
			rein_io_wait(io, 20000);
		assert_int_equal(r.status, 200);
		res_free(&r);
	}
	assert_true(rein_clock_now(&rein_clock_system) - t0 < 20000);
	rein_free(u);
}

static void test_wait_empty(void **state)
{
	rein_io *io = *state;
	/* nothing in flight: no blocking forever, no callbacks */
	assert_int_equal(rein_io_wait(io, -1), 0);
	assert_int_equal(rein_io_wait(io, 50), 0);
	/* a wake before the wait ends it at once */
	rein_io_wake(io);
	int64_t t0 = rein_clock_now(&rein_clock_system);
	assert_int_equal(rein_io_wait(io, 30000), 0);
	assert_true(rein_clock_now(&rein_clock_system) - t0 < 10000);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ok_echo, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_status_codes, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_retry_after, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_too_large, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_protocol, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_cancel, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_in_callback, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, io_setup, io_teardown),
		cmocka_unit_test(test_free_inflight),
		cmocka_unit_test(test_free_many_lanes),
		cmocka_unit_test_setup_teardown(test_wait_returns, io_setup, io_teardown),
		cmocka_unit_test_setup_teardown(test_wait_empty, io_setup, io_teardown),
	};
	return cmocka_run_group_tests(tests, server_start, server_stop);
}
