/*
 * The MCP client against real servers from the npm registry (pinned in
 * tests/mcp/package.json, installed by tests/mcp/setup.sh):
 * @modelcontextprotocol/server-everything over stdio and streamable HTTP, and
 * @modelcontextprotocol/server-filesystem over stdio. A few small scripted
 * servers (sh) cover what the real ones never do: garbage on stdout, an
 * unsupported protocol revision, pagination, server requests, stray answers.
 * Without npm the real-server tests are skipped with a message.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "io.h"
#include "mcp.h"

extern char **environ;

#define EVERYTHING "tests/mcp/node_modules/.bin/mcp-server-everything"
#define FILESYSTEM "tests/mcp/node_modules/.bin/mcp-server-filesystem"

static bool have_servers;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool run_until(rein_io *io, const bool *flag, int64_t ms)
{
	int64_t end = mono_ms() + ms;
	while (!*flag && mono_ms() < end)
		rein_io_wait(io, 50);
	return *flag;
}

static void pump(rein_io *io, int64_t ms)
{
	int64_t end = mono_ms() + ms;
	while (mono_ms() < end)
		rein_io_wait(io, end - mono_ms());
}

typedef struct got {
	bool done;
	int status;
	char errmsg[512];
	json_t *result, *structured, *content;
	bool is_error;
} got;

static void on_res(void *ud, const rein_mcp_result *r)
{
	got *g = ud;
	assert_false(g->done);
	g->done = true;
	g->status = r->status;
	snprintf(g->errmsg, sizeof g->errmsg, "%s", r->errmsg);
	g->result = json_incref((json_t *)r->result);
	g->structured = json_incref((json_t *)r->structured);
	g->content = json_incref((json_t *)r->content);
	g->is_error = r->is_error;
}

static void got_clear(got *g)
{
	json_decref(g->result);
	json_decref(g->structured);
	json_decref(g->content);
	memset(g, 0, sizeof *g);
}

static void set_flag(void *ud) { *(bool *)ud = true; }

static void close_wait(rein_io *io, rein_mcp *m)
{
	bool closed = false;
	rein_mcp_close_then(m, set_flag, &closed);
	assert_true(run_until(io, &closed, 10000));
}

static rein_io *io_new(void)
{
	rein_io *io = NULL;
	rein_err err = {0};
	assert_int_equal(rein_io_new(&io, &err), REIN_OK);
	return io;
}

static rein_mcp *open_cfg(rein_io *io, const rein_mcp_config *cfg)
{
	rein_mcp *m = NULL;
	rein_err err = {0};
	int rc = rein_mcp_open(io, cfg, &m, &err);
	if (rc)
		fprintf(stderr, "open: %s\n", err.msg);
	assert_int_equal(rc, REIN_OK);
	return m;
}

/* tools/list, waited for; returns the tools array (caller decrefs). */
static json_t *list_tools(rein_io *io, rein_mcp *m)
{
	got g = {0};
	rein_err err = {0};
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_OK);
	assert_true(run_until(io, &g.done, 30000));
	if (g.status != REIN_MCP_OK)
		fprintf(stderr, "list: %s\n", g.errmsg);
	assert_int_equal(g.status, REIN_MCP_OK);
	json_t *tools = json_incref(json_object_get(g.result, "tools"));
	got_clear(&g);
	assert_true(json_is_array(tools));
	return tools;
}

static const json_t *find_tool(const json_t *tools, const char *name)
{
	size_t i;
	const json_t *t;
	json_array_foreach(tools, i, t)
		if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
			return t;
	return NULL;
}

/* tools/call, waited for; g receives the result. */
static void call(rein_io *io, rein_mcp *m, const char *name, const char *args, int64_t timeout,
		 got *g)
{
	json_t *a = J(args);
	rein_err err = {0};
	int rc = rein_mcp_call_tool(m, name, a, timeout, on_res, g, NULL, &err);
	json_decref(a);
	if (rc)
		fprintf(stderr, "call: %s\n", err.msg);
	assert_int_equal(rc, REIN_OK);
	assert_true(run_until(io, &g->done, 30000));
}

static const char *first_text(const got *g)
{
	const char *t = json_string_value(json_object_get(json_array_get(g->content, 0), "text"));
	return t ? t : "";
}

static void echo_ok(rein_io *io, rein_mcp *m, const char *word)
{
	got g = {0};
	char args[128];
	snprintf(args, sizeof args, "{\"message\": \"%s\"}", word);
	call(io, m, "echo", args, 0, &g);
	if (g.status != REIN_MCP_OK)
		fprintf(stderr, "echo: %s\n", g.errmsg);
	assert_int_equal(g.status, REIN_MCP_OK);
	assert_non_null(strstr(first_text(&g), word));
	got_clear(&g);
}

#define NEED_SERVERS()                                                                        \
	do {                                                                                  \
		if (!have_servers)                                                            \
			skip();                                                               \
	} while (0)

static const char *const everything_argv[] = {EVERYTHING, "stdio", NULL};

/* ---- server-everything over stdio ------------------------------------- */

static void test_everything_stdio(void **state)
{
	NEED_SERVERS();
	rein_io *io = io_new();
	rein_mcp_config cfg = {.name = "everything", .argv = everything_argv};
	rein_mcp *m = open_cfg(io, &cfg);
	assert_null(rein_mcp_protocol(m)); /* not yet initialized */

	json_t *tools = list_tools(io, m);
	const char *proto = rein_mcp_protocol(m);
	assert_non_null(proto);
	fprintf(stderr, "server-everything (stdio) negotiated protocol %s, server %s, %zu tools\n",
		proto, json_string_value(json_object_get(rein_mcp_server_info(m), "name")),
		json_array_size(tools));
	assert_string_equal(proto, "2025-11-25");
	assert_true(json_is_object(rein_mcp_server_capabilities(m)));
	const json_t *echo = find_tool(tools, "echo");
	assert_non_null(echo);
	assert_true(json_is_object(json_object_get(echo, "inputSchema")));
	assert_non_null(find_tool(tools, "trigger-long-running-operation"));
	json_decref(tools);

	echo_ok(io, m, "hello rein");

	/* structuredContent */
	got g = {0};
	call(io, m, "get-structured-content", "{\"location\": \"New York\"}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_OK);
	assert_true(json_is_object(g.structured));
	assert_non_null(json_object_get(g.structured, "temperature"));
	assert_true(json_is_array(g.content));
	got_clear(&g);

	/* numbers in, text out */
	call(io, m, "get-sum", "{\"a\": 2, \"b\": 40}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_OK);
	assert_non_null(strstr(first_text(&g), "42"));
	got_clear(&g);

	/* an unknown tool: a JSON-RPC error or isError, never a success */
	call(io, m, "no-such-tool", "{}", 0, &g);
	fprintf(stderr, "unknown tool -> status %d: %s\n", g.status, g.errmsg);
	assert_true(g.status == REIN_MCP_PROTOCOL || g.status == REIN_MCP_TOOL_ERROR);
	if (g.status == REIN_MCP_TOOL_ERROR)
		assert_true(g.is_error);
	got_clear(&g);

	/* arguments that fail the tool's input schema */
	call(io, m, "get-sum", "{\"a\": \"two\"}", 0, &g);
	assert_true(g.status == REIN_MCP_PROTOCOL || g.status == REIN_MCP_TOOL_ERROR);
	got_clear(&g);

	/* the connection still works after the errors */
	echo_ok(io, m, "still here");
	close_wait(io, m);
	rein_io_free(io);
}

static void test_everything_cancel_timeout(void **state)
{
	NEED_SERVERS();
	rein_io *io = io_new();
	rein_mcp_config cfg = {.name = "everything", .argv = everything_argv};
	rein_mcp *m = open_cfg(io, &cfg);
	echo_ok(io, m, "warm");

	/* cancel a long-running call after it has started */
	got g = {0};
	rein_mcp_call *c = NULL;
	rein_err err = {0};
	json_t *a = J("{\"duration\": 20, \"steps\": 20}");
	int64_t t0 = mono_ms();
	assert_int_equal(rein_mcp_call_tool(m, "trigger-long-running-operation", a, 0, on_res, &g,
					    &c, &err),
			 REIN_OK);
	json_decref(a);
	pump(io, 500);
	assert_false(g.done);
	rein_mcp_cancel(c);
	assert_true(g.done); /* the callback ran inside rein_mcp_cancel */
	assert_int_equal(g.status, REIN_MCP_CANCELLED);
	got_clear(&g);
	echo_ok(io, m, "after cancel");

	/* a deadline shorter than the operation */
	call(io, m, "trigger-long-running-operation", "{\"duration\": 20, \"steps\": 20}", 400,
	     &g);
	assert_int_equal(g.status, REIN_MCP_TIMEOUT);
	assert_true(mono_ms() - t0 < 10000);
	fprintf(stderr, "timeout: %s\n", g.errmsg);
	got_clear(&g);
	echo_ok(io, m, "after timeout");

	/* a long call closed under our feet reports cancelled */
	a = J("{\"duration\": 20, \"steps\": 20}");
	rein_mcp_call_tool(m, "trigger-long-running-operation", a, 0, on_res, &g, NULL, &err);
	json_decref(a);
	pump(io, 200);
	close_wait(io, m);
	assert_true(g.done);
	assert_int_equal(g.status, REIN_MCP_CANCELLED);
	got_clear(&g);
	rein_io_free(io);
}

static void test_everything_restart(void **state)
{
	NEED_SERVERS();
	rein_io *io = io_new();
	rein_mcp_config cfg = {
		.name = "everything", .argv = everything_argv, .restart_backoff_ms = 100};
	rein_mcp *m = open_cfg(io, &cfg);
	echo_ok(io, m, "before kill");
	int pid = rein_mcp_pid(m);
	assert_true(pid > 0);

	/* a call in flight when the child dies fails with a transport error */
	got g = {0};
	rein_err err = {0};
	json_t *a = J("{\"duration\": 20, \"steps\": 20}");
	assert_int_equal(rein_mcp_call_tool(m, "trigger-long-running-operation", a, 0, on_res, &g,
					    NULL, &err),
			 REIN_OK);
	json_decref(a);
	pump(io, 300);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_true(run_until(io, &g.done, 5000));
	assert_int_equal(g.status, REIN_MCP_TRANSPORT);
	fprintf(stderr, "after SIGKILL: %s\n", g.errmsg);
	got_clear(&g);

	/* the next call waits for the restart and the new initialize */
	echo_ok(io, m, "after restart");
	int pid2 = rein_mcp_pid(m);
	assert_true(pid2 > 0 && pid2 != pid);
	assert_string_equal(rein_mcp_protocol(m), "2025-11-25");

	/* a kill while idle, then an immediate call: queued until re-initialized */
	assert_int_equal(kill(pid2, SIGKILL), 0);
	pump(io, 100);
	echo_ok(io, m, "second restart");
	close_wait(io, m);
	rein_io_free(io);
}

static void test_list_sync(void **state)
{
	NEED_SERVERS();
	rein_io *io = io_new();
	rein_mcp_config cfg = {.name = "everything", .argv = everything_argv};
	json_t *tools = NULL;
	char *proto = NULL;
	rein_err err = {0};
	int rc = rein_mcp_list_tools_sync(io, &cfg, &tools, &proto, &err);
	if (rc)
		fprintf(stderr, "sync: %s\n", err.msg);
	assert_int_equal(rc, REIN_OK);
	assert_string_equal(proto, "2025-11-25");
	assert_non_null(find_tool(tools, "echo"));
	json_decref(tools);
	rein_free(proto);

	const char *const bad[] = {"/nonexistent/mcp-server", NULL};
	rein_mcp_config bcfg = {.name = "bad", .argv = bad};
	rein_err_clear(&err);
	rc = rein_mcp_list_tools_sync(io, &bcfg, &tools, &proto, &err);
	assert_int_equal(rc, REIN_EIO);
	assert_non_null(strstr(err.msg, "cannot start"));
	pump(io, 50); /* let the failed spawn's handles close */
	rein_io_free(io);
}

/* ---- server-filesystem ------------------------------------------------ */

static void test_filesystem(void **state)
{
	NEED_SERVERS();
	char *dir = temp_dir();
	char real[4096];
	assert_non_null(realpath(dir, real));
	rein_io *io = io_new();
	const char *const argv[] = {FILESYSTEM, real, NULL};
	rein_mcp_config cfg = {.name = "filesystem", .argv = argv};
	rein_mcp *m = open_cfg(io, &cfg);
	json_t *tools = list_tools(io, m);
	fprintf(stderr, "server-filesystem negotiated protocol %s, %zu tools\n",
		rein_mcp_protocol(m), json_array_size(tools));
	assert_non_null(find_tool(tools, "write_file"));
	const char *reader = find_tool(tools, "read_text_file") ? "read_text_file" : "read_file";
	assert_non_null(find_tool(tools, reader));
	json_decref(tools);

	char args[4600];
	got g = {0};
	snprintf(args, sizeof args, "{\"path\": \"%s/note.txt\", \"content\": \"line one\\nzwei\\n\"}",
		 real);
	call(io, m, "write_file", args, 0, &g);
	if (g.status)
		fprintf(stderr, "write_file: %s\n", g.errmsg);
	assert_int_equal(g.status, REIN_MCP_OK);
	got_clear(&g);

	snprintf(args, sizeof args, "{\"path\": \"%s/note.txt\"}", real);
	call(io, m, reader, args, 0, &g);
	assert_int_equal(g.status, REIN_MCP_OK);
	assert_string_equal(first_text(&g), "line one\nzwei\n");
	got_clear(&g);

	/* outside the allowed root: the server refuses (isError) */
	call(io, m, reader, "{\"path\": \"/etc/passwd\"}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_TOOL_ERROR);
	assert_true(g.is_error);
	got_clear(&g);

	close_wait(io, m);
	rein_io_free(io);
	rm_rf(dir);
	free(dir);
}

/* ---- server-everything over streamable HTTP --------------------------- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				.sin_port = htons((uint16_t)port)};
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/* Starts server-everything in streamable HTTP mode on port (PORT is the only
 * knob it has: it listens on every interface). */
static pid_t http_server_start(int port)
{
	char portenv[32];
	snprintf(portenv, sizeof portenv, "PORT=%d", port);
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof *env);
	for (size_t i = 0, k = 0; i < n; i++)
		if (strncmp(environ[i], "PORT=", 5) != 0)
			env[k++] = environ[i];
	for (size_t i = 0;; i++)
		if (env[i] == NULL) {
			env[i] = portenv;
			break;
		}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	char *const argv[] = {(char *)EVERYTHING, (char *)"streamableHttp", NULL};
	pid_t pid = 0;
	assert_int_equal(posix_spawn(&pid, EVERYTHING, &fa, NULL, argv, env), 0);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	int64_t end = mono_ms() + 15000;
	while (!port_open(port) && mono_ms() < end)
		usleep(50000);
	assert_true(port_open(port));
	return pid;
}

static void http_server_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
}

static void test_everything_http(void **state)
{
	NEED_SERVERS();
	int port = free_port();
	pid_t srv = http_server_start(port);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
	rein_io *io = io_new();
	rein_mcp_config cfg = {.name = "everything-http", .url = url};
	rein_mcp *m = open_cfg(io, &cfg);
	json_t *tools = list_tools(io, m);
	fprintf(stderr, "server-everything (HTTP) negotiated protocol %s, %zu tools\n",
		rein_mcp_protocol(m), json_array_size(tools));
	assert_string_equal(rein_mcp_protocol(m), "2025-11-25");
	assert_non_null(find_tool(tools, "echo"));
	json_decref(tools);
	echo_ok(io, m, "over http");

	got g = {0};
	call(io, m, "get-structured-content", "{\"location\": \"Chicago\"}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_OK);
	assert_true(json_is_object(g.structured));
	got_clear(&g);

	/* cancel over HTTP: the POST is dropped, notifications/cancelled sent */
	rein_mcp_call *c = NULL;
	rein_err err = {0};
	json_t *a = J("{\"duration\": 20, \"steps\": 20}");
	assert_int_equal(rein_mcp_call_tool(m, "trigger-long-running-operation", a, 0, on_res, &g,
					    &c, &err),
			 REIN_OK);
	json_decref(a);
	pump(io, 300);
	rein_mcp_cancel(c);
	assert_int_equal(g.status, REIN_MCP_CANCELLED);
	got_clear(&g);

	/* timeouts too */
	call(io, m, "trigger-long-running-operation", "{\"duration\": 20, \"steps\": 20}", 300,
	     &g);
	assert_int_equal(g.status, REIN_MCP_TIMEOUT);
	got_clear(&g);
	echo_ok(io, m, "after http timeout");

	/* the server restarts and forgets our session: re-initialize once */
	http_server_stop(srv);
	srv = http_server_start(port);
	echo_ok(io, m, "new session");

	/* the server is gone: a transport error */
	http_server_stop(srv);
	call(io, m, "echo", "{\"message\": \"nobody\"}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_TRANSPORT);
	fprintf(stderr, "server down: %s\n", g.errmsg);
	got_clear(&g);
	srv = http_server_start(port);
	echo_ok(io, m, "back again");

	close_wait(io, m); /* DELETEs the session */
	rein_io_free(io);
	http_server_stop(srv);
}

/* ---- scripted servers (what real servers do not do) ------------------- */

static void test_garbage_stdout(void **state)
{
	rein_io *io = io_new();
	const char *const argv[] = {"sh", "-c", "read l; echo 'this is not json'; sleep 30", NULL};
	rein_mcp_config cfg = {.name = "garbage", .argv = argv, .max_restarts = 1,
			       .restart_backoff_ms = 50};
	rein_mcp *m = open_cfg(io, &cfg);
	got g = {0};
	rein_err err = {0};
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_OK);
	assert_true(run_until(io, &g.done, 5000));
	assert_int_equal(g.status, REIN_MCP_PROTOCOL);
	assert_non_null(strstr(g.errmsg, "protocol error"));
	got_clear(&g);
	close_wait(io, m);
	rein_io_free(io);
}

/* A server that dies at once: restarted max_restarts times with growing
 * delays, then the connection gives up with its stderr in the message. */
static void test_crash_loop(void **state)
{
	rein_io *io = io_new();
	const char *const argv[] = {"sh", "-c", "echo boom on stderr >&2; exit 3", NULL};
	rein_mcp_config cfg = {.name = "crashy", .argv = argv, .max_restarts = 3,
			       .restart_backoff_ms = 20};
	rein_mcp *m = open_cfg(io, &cfg);
	got g = {0};
	rein_err err = {0};
	int64_t t0 = mono_ms();
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_OK);
	assert_true(run_until(io, &g.done, 10000));
	int64_t took = mono_ms() - t0;
	fprintf(stderr, "crash loop (%lld ms): %s\n", (long long)took, g.errmsg);
	assert_int_equal(g.status, REIN_MCP_TRANSPORT);
	assert_non_null(strstr(g.errmsg, "exited with status 3"));
	assert_non_null(strstr(g.errmsg, "boom on stderr"));
	assert_non_null(strstr(g.errmsg, "gave up after 3 restarts"));
	assert_true(took >= 20 + 40 + 80);
	got_clear(&g);
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_EIO);
	close_wait(io, m);
	rein_io_free(io);
}

static void test_old_protocol(void **state)
{
	rein_io *io = io_new();
	const char *const argv[] = {
		"sh", "-c",
		"read l; echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":"
		"\"2024-11-05\",\"capabilities\":{},\"serverInfo\":{\"name\":\"old\",\"version\":"
		"\"1\"}}}'; sleep 30",
		NULL};
	rein_mcp_config cfg = {.name = "old", .argv = argv};
	rein_mcp *m = open_cfg(io, &cfg);
	got g = {0};
	rein_err err = {0};
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_OK);
	assert_true(run_until(io, &g.done, 5000));
	assert_int_equal(g.status, REIN_MCP_PROTOCOL);
	assert_non_null(strstr(g.errmsg, "2024-11-05"));
	got_clear(&g);
	/* broken for good: later requests fail at once */
	assert_int_equal(rein_mcp_list_tools(m, on_res, &g, &err), REIN_EIO);
	assert_false(g.done);
	close_wait(io, m);
	rein_io_free(io);
}

/* Pagination, server requests answered, notifications and stray answers
 * ignored; the fake writes what it received into a file we check. */
static void test_scripted_server(void **state)
{
	char *dir = temp_dir();
	char script[8192], log[512];
	snprintf(log, sizeof log, "%s/got.txt", dir);
	snprintf(script, sizeof script,
		 "read l; echo \"$l\" > '%s';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\","
		 "\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"fake\",\"version\":\"1\"}}}';"
		 "read l; echo \"$l\" >> '%s';"
		 "read l; echo \"$l\" >> '%s';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"ping\"}';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"roots/list\"}';"
		 "echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":999,\"result\":{}}';"
		 "echo '{\"unexpected\":true}';"
		 "echo '';"
		 "read a; echo \"$a\" >> '%s'; read b; echo \"$b\" >> '%s';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\","
		 "\"inputSchema\":{\"type\":\"object\"}}],\"nextCursor\":\"page2\"}}';"
		 "read l; echo \"$l\" >> '%s';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"b\","
		 "\"inputSchema\":{\"type\":\"object\"}}]}}';"
		 "read l; echo \"$l\" >> '%s';"
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-32602,\"message\":\"nope\"}}';"
		 "for i in 1 2 3 4; do read l; echo \"$l\" >> '%s'; done;"
		 "sleep 30",
		 log, log, log, log, log, log, log, log);
	const char *const argv[] = {"sh", "-c", script, NULL};
	rein_io *io = io_new();
	rein_mcp_config cfg = {.name = "fake", .argv = argv};
	rein_mcp *m = open_cfg(io, &cfg);
	json_t *tools = list_tools(io, m);
	assert_json_eq(tools, "[{\"name\":\"a\",\"inputSchema\":{\"type\":\"object\"}},"
			      "{\"name\":\"b\",\"inputSchema\":{\"type\":\"object\"}}]");
	json_decref(tools);
	assert_string_equal(rein_mcp_protocol(m), "2025-06-18");
	got g = {0};
	call(io, m, "x", "{}", 0, &g);
	assert_int_equal(g.status, REIN_MCP_PROTOCOL);
	assert_non_null(strstr(g.errmsg, "-32602"));
	got_clear(&g);
	/* a timeout and a cancel each send notifications/cancelled */
	call(io, m, "slow", "{}", 200, &g);
	assert_int_equal(g.status, REIN_MCP_TIMEOUT);
	got_clear(&g);
	rein_mcp_call *c = NULL;
	rein_err cerr = {0};
	assert_int_equal(rein_mcp_call_tool(m, "slow", NULL, 0, on_res, &g, &c, &cerr), REIN_OK);
	pump(io, 100);
	rein_mcp_cancel(c);
	assert_int_equal(g.status, REIN_MCP_CANCELLED);
	got_clear(&g);
	pump(io, 300);
	close_wait(io, m);
	rein_io_free(io);

	char *text = NULL;
	size_t len = 0;
	rein_err err = {0};
	assert_int_equal(rein_file_read(log, &text, &len, &err), REIN_OK);
	char *lines[16] = {0};
	int n = 0;
	for (char *s = strtok(text, "\n"); s && n < 16; s = strtok(NULL, "\n"))
		lines[n++] = s;
	assert_int_equal(n, 11);
	json_t *j = J(lines[0]);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "initialize");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"),
							      "protocolVersion")),
			    "2026-07-28");
	assert_json_eq(json_object_get(json_object_get(j, "params"), "clientInfo"),
		       "{\"name\":\"rein\",\"version\":\"0.1\"}");
	json_decref(j);
	assert_non_null(strstr(lines[1], "notifications/initialized"));
	assert_non_null(strstr(lines[2], "tools/list"));
	j = J(lines[3]);
	assert_json_eq(j, "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"result\":{}}");
	json_decref(j);
	j = J(lines[4]);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "code")),
			 -32601);
	assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
	json_decref(j);
	j = J(lines[5]);
	assert_json_eq(json_object_get(j, "params"), "{\"cursor\":\"page2\"}");
	json_decref(j);
	assert_non_null(strstr(lines[6], "tools/call"));
	j = J(lines[8]);
	assert_string_equal(json_string_value(json_object_get(j, "method")),
			    "notifications/cancelled");
	assert_json_eq(json_object_get(j, "params"), "{\"requestId\":5,\"reason\":\"timeout\"}");
	json_decref(j);
	j = J(lines[9]);
	assert_int_equal(json_integer_value(json_object_get(j, "id")), 6);
	json_decref(j);
	j = J(lines[10]);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "params"),
							     "requestId")),
			 6);
	json_decref(j);
	rein_free(text);
	rm_rf(dir);
	free(dir);
}

static void test_bad_config(void **state)
{
	rein_io *io = io_new();
	rein_mcp *m = NULL;
	rein_err err = {0};
	rein_mcp_config none = {.name = "none"};
	assert_int_equal(rein_mcp_open(io, &none, &m, &err), REIN_EINVAL);
	rein_err_clear(&err);
	rein_mcp_config ftp = {.name = "ftp", .url = "ftp://example.org/"};
	assert_int_equal(rein_mcp_open(io, &ftp, &m, &err), REIN_EINVAL);
	rein_io_free(io);
}

static int setup_servers(void **state)
{
	rein_init();
	int st = system("sh tests/mcp/setup.sh");
	if (st == 0) {
		have_servers = true;
	} else {
		fprintf(stderr, "tests/mcp/setup.sh failed (status %d): real MCP server tests are "
				"SKIPPED (needs npm and node)\n",
			st);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
			return -1; /* npm present but install failed: that is a failure */
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_garbage_stdout),
		cmocka_unit_test(test_old_protocol),
		cmocka_unit_test(test_crash_loop),
		cmocka_unit_test(test_scripted_server),
		cmocka_unit_test(test_everything_stdio),
		cmocka_unit_test(test_everything_cancel_timeout),
		cmocka_unit_test(test_everything_restart),
		cmocka_unit_test(test_list_sync),
		cmocka_unit_test(test_filesystem),
		cmocka_unit_test(test_everything_http),
	};
	return cmocka_run_group_tests(tests, setup_servers, NULL);
}
