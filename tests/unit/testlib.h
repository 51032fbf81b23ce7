/* Shared helpers for the unit programs (header-only, static). */
#ifndef REIN_TESTLIB_H
#define REIN_TESTLIB_H

#include <ctype.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "engine.h"
#include "runner.h"
#include "script.h"
#include "spec.h"
#include "store.h"

/* The name in the log of event type REIN_EV_x (the table, event_types.h). */
#define EV(x) rein_event_name(REIN_EV_##x)

/* Compiles a spec from YAML text (as a one-file bundle); fails the test on error. */
static inline rein_spec *spec_from_yaml(rein_script *sb, const char *yaml)
{
	json_t *bundle = json_pack("{s:{s:s}}", "files", "workflow.yaml", yaml);
	rein_spec *spec = NULL;
	rein_err e = {0};
	int rc = rein_spec_load_bundle(bundle, "t", sb, &spec, &e);
	if (rc != REIN_OK) {
		rein_diags_print(&e.diags, stderr);
		fprintf(stderr, "spec: %s\n", e.msg);
	}
	rein_err_clear(&e);
	json_decref(bundle);
	assert_int_equal(rc, REIN_OK);
	return spec;
}

/* A fresh temporary directory path (created); caller frees. */
static inline char *temp_dir(void)
{
	char *p = strdup("/tmp/rein-unit.XXXXXX");
	assert_non_null(mkdtemp(p));
	return p;
}

static inline void rm_rf(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static inline json_t *J(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	assert_non_null(j);
	return j;
}

static inline void assert_json_eq(const json_t *got, const char *want)
{
	json_t *w = J(want);
	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		fprintf(stderr, "got  %s\nwant %s\n", g ? g : "(null)", want);
		free(g);
	}
	assert_true(json_equal(got, w));
	json_decref(w);
}

/* An events callback: counts step.completed per step into the object ud. */
static inline int count_completions(void *ud, const rein_event_row *ev)
{
	json_t *counts = ud;
	if (rein_event_type_find(ev->type) == REIN_EV_STEP_COMPLETED) {
		json_int_t n = json_integer_value(json_object_get(counts, ev->step));
		json_object_set_new(counts, ev->step, json_integer(n + 1));
	}
	return 0;
}

/* A loopback test server (toolserver, modelserver) run by a unit program. */
typedef struct test_server {
	pid_t pid; /* 0: not running */
	int port;
	char dir[64]; /* temporary, holds the port file */
} test_server;

/* Stops the server and removes its directory; s may be one that did not start. */
static inline void test_server_down(test_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	if (s->dir[0] != '\0')
		rm_rf(s->dir);
	*s = (test_server){0};
}

/*
 * Starts build/asan/tools/<name>, or the binary $REIN_<NAME> names, on an
 * ephemeral port; returns 0 with s->port set, or -1 (no such binary, or the
 * server did not come up within 15 s).
 */
static inline int test_server_up(test_server *s, const char *name)
{
	char env[64], dflt[128];
	snprintf(env, sizeof env, "REIN_%s", name);
	for (char *p = env; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	const char *bin = getenv(env);
	if (bin == NULL) {
		snprintf(dflt, sizeof dflt, "build/asan/tools/%s", name);
		bin = dflt;
	}
	*s = (test_server){0};
	if (access(bin, X_OK) != 0) {
		fprintf(stderr, "no %s at %s (make asan)\n", name, bin);
		return -1;
	}
	snprintf(s->dir, sizeof s->dir, "/tmp/rein-%s.XXXXXX", name);
	if (mkdtemp(s->dir) == NULL) {
		s->dir[0] = '\0';
		return -1;
	}
	char port_file[128];
	snprintf(port_file, sizeof port_file, "%s/port", s->dir);
	pid_t pid = fork();
	if (pid < 0) {
		test_server_down(s);
		return -1;
	}
	if (pid == 0) {
		execl(bin, bin, "--port", "0", "--port-file", port_file, "--max-seconds", "300",
		      (char *)NULL);
		_exit(127);
	}
	s->pid = pid;
	for (int n = 0; n < 300 && s->port == 0; n++) {
		FILE *f = fopen(port_file, "r");
		if (f != NULL) {
			if (fscanf(f, "%d", &s->port) != 1)
				s->port = 0;
			fclose(f);
		}
		if (s->port == 0)
			usleep(50000);
	}
	if (s->port > 0)
		return 0;
	test_server_down(s);
	return -1;
}

#endif
