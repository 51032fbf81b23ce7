/* Shared helpers for the unit programs (header-only, static). */
#ifndef REIN_TESTLIB_H
#define REIN_TESTLIB_H

#include <setjmp.h>
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

/* Compiles a spec from YAML text (as a one-file bundle); fails the test on error. */
static inline rein_spec *spec_from_yaml(rein_script *sb, const char *yaml)
{
	json_t *bundle = json_pack("{s:{s:s}}", "files", "workflow.yaml", yaml);
	rein_spec *spec = NULL;
	rein_diags d = {0};
	rein_err e = {0};
	int rc = rein_spec_load_bundle(bundle, "t", sb, &spec, &d, &e);
	if (rc != REIN_OK) {
		rein_diags_print(&d, stderr);
		fprintf(stderr, "spec: %s\n", e.msg);
	}
	rein_diags_free(&d);
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

/*
 * Starts one of the loopback test servers (toolserver, modelserver) on an
 * ephemeral port written to port_file; returns its pid with *port set, or -1
 * (the server did not come up within 15 s).
 */
static inline pid_t test_server_start(const char *bin, const char *port_file, int *port)
{
	*port = 0;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl(bin, bin, "--port", "0", "--port-file", port_file, "--max-seconds", "300",
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300 && *port == 0; i++) {
		FILE *f = fopen(port_file, "r");
		if (f != NULL) {
			if (fscanf(f, "%d", port) != 1)
				*port = 0;
			fclose(f);
		}
		if (*port == 0)
			usleep(50000);
	}
	if (*port > 0)
		return pid;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

#endif
