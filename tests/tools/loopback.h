/*
 * loopback: the HTTP side of the loopback test servers (toolserver.c,
 * modelserver.c). One libuv loop, one thread, a small HTTP/1.1 parser
 * (Content-Length and chunked bodies, keep-alive, pipelining, Expect:
 * 100-continue), the writes, and what main() does around them: the common
 * options, listening on 127.0.0.1, the port file, the exit after
 * --max-seconds. A server says what a request means through an lb_server.
 */
#ifndef REIN_TEST_LOOPBACK_H
#define REIN_TEST_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <uv.h>

#include "base.h"

/*
 * One client connection. A server's own connection struct starts with an
 * lb_conn (lb_server.conn_size says how large it is): the loopback layer
 * allocates and frees the whole, and passes the lb_conn.
 */
typedef struct lb_conn {
	uv_tcp_t tcp;
	rein_buf in;
	bool busy;        /* a request is being answered: the next ones wait */
	bool closing;
	bool close_after; /* close once the answer is written (Connection: close, HTTP/1.0) */
	bool sent_continue;
} lb_conn;

/* One parsed request; the server frees it with lb_request_free. */
typedef struct lb_request {
	char method[16];
	char *path;      /* owned: the target without its query, %-decoded */
	json_t *headers; /* owned: lowercased names, values as sent (the last of a repeated name) */
	char *body;      /* owned, NUL-terminated */
	size_t body_len;
} lb_request;

typedef struct lb_server {
	const char *name; /* for messages: "toolserver" */
	int backlog;      /* connections that may wait to be accepted */
	size_t conn_size; /* the server's connection struct, an lb_conn first */
	/* Answers one request; owns r. c stays busy until lb_respond (or the
	 * server clears busy itself and calls lb_next). */
	void (*request)(lb_conn *c, lb_request *r);
	/* Answers a request the parser refused (400, 413, 431), in the server's
	 * error format; the connection closes after. */
	void (*refuse)(lb_conn *c, int status, const char *msg);
	/* c is closing: let go of what waits on it. May be NULL. */
	void (*closing)(lb_conn *c);
	/* A write sent with LB_MORE went out: send the next part. May be NULL. */
	void (*more)(lb_conn *c);
} lb_server;

/* The options every server takes; lb_option fills them. */
typedef struct lb_opts {
	int port; /* 0: an ephemeral port */
	const char *port_file;
	long max_seconds;
} lb_opts;

#define LB_OPTS_DEFAULT ((lb_opts){.max_seconds = 600})

enum {
	LB_CLOSE = 1, /* close the connection once this is written */
	LB_MORE = 2,  /* call the server's more() once this is written */
};

/* The reason phrase of an HTTP status. */
const char *lb_reason(int status);

/* Takes argv[*i] (and its value, moving *i past it) if it is --port N,
 * --port-file PATH or --max-seconds S; returns whether it did. */
bool lb_option(lb_opts *o, int argc, char **argv, int *i);

/* Listens on 127.0.0.1:o->port, writes the port to o->port_file, runs the
 * loop; exits by itself after o->max_seconds. Returns main's exit code (1 if
 * it cannot listen or write the port file). Borrows s for the process. */
int lb_serve(const lb_server *s, const lb_opts *o);

/* Answers {"ok":true} and exits the process 50 ms later, time enough to
 * write the answer. */
void lb_shutdown(lb_conn *c);

/* Writes data (owned from here, freed even on failure); flags LB_CLOSE, LB_MORE. */
void lb_send(lb_conn *c, char *data, size_t len, int flags);
void lb_send_text(lb_conn *c, const char *text, int flags);

/* A complete response; the connection is free for the next request. */
void lb_respond(lb_conn *c, int status, const char *extra, const char *body, size_t len);
/* The same with a JSON body (stolen); extra header lines may be NULL. */
void lb_respond_json(lb_conn *c, int status, const char *extra, json_t *j);

/* Closes c once; pending writes are dropped. */
void lb_close(lb_conn *c);

/* Answers the requests waiting on c while it is not busy: for an answer
 * that ended after the request that started it (a timer, a long body). */
void lb_next(lb_conn *c);

/* A header of r by its lowercased name; NULL if absent. */
const char *lb_header(const lb_request *r, const char *name);
void lb_request_free(lb_request *r);

#endif
