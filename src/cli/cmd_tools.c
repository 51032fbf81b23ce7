/*
 * rein tools lock DIR / rein tools check DIR: a CI gate against tools whose
 * schemas change under a workflow. See src/tools/lock.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "cli.h"
#include "io.h"
#include "script.h"
#include "spec.h"
#include "tools.h"

static const char usage[] =
	"usage: rein tools lock DIR\n"
	"       rein tools check DIR\n"
	"\n"
	"lock   connects to every MCP server of the workflow in DIR, reads each tool's\n"
	"       input and output schemas (HTTP tools: from their contracts) and writes\n"
	"       them with their SHA-256 to DIR/tools.lock.\n"
	"check  does the same and compares with DIR/tools.lock: every change is\n"
	"       printed as 'TOOL: change'; exit 1 when a change breaks callers (a new\n"
	"       required argument, an argument no longer accepted, a result field no\n"
	"       longer guaranteed, a changed type, a tool gone), else 0.\n"
	"\n"
	"exit: 0 ok, 1 breaking drift or a server that cannot be reached, 2 bad usage,\n"
	"an invalid workflow, or no tools.lock (check).\n";

int rein_cmd_tools(int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	opterr = 0;
	for (int c; (c = getopt_long(argc, argv, ":", lo, NULL)) != -1;) {
		if (c == 'h') {
			fputs(usage, stdout);
			return 0;
		}
		fprintf(stderr, "rein tools: unknown option '%s'\n(see 'rein tools --help')\n",
			argv[optind - 1]);
		return 2;
	}
	if (argc - optind != 2 || (strcmp(argv[optind], "lock") != 0 && strcmp(argv[optind], "check") != 0)) {
		fprintf(stderr, "rein tools: needs 'lock DIR' or 'check DIR'\n(see 'rein tools --help')\n");
		return 2;
	}
	bool check = strcmp(argv[optind], "check") == 0;
	const char *dir = argv[optind + 1];
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_io *io = NULL;
	json_t *cur = NULL, *old = NULL, *report = NULL;
	rein_err e = {0};
	int ex = 1;
	char path[4096];
	snprintf(path, sizeof path, "%s/tools.lock", dir);
	if (rein_script_new(&sb) != REIN_OK)
		goto out;
	if (rein_spec_load_dir(dir, sb, &spec, &e) != REIN_OK) {
		rein_err_print(&e, dir, stderr);
		ex = 2;
		goto out;
	}
	if (check) {
		char *text = NULL;
		size_t len = 0;
		if (rein_file_read(path, &text, &len, &e) != REIN_OK) {
			fprintf(stderr, "rein tools check: %s (run 'rein tools lock %s' first)\n", e.msg, dir);
			ex = 2;
			goto out;
		}
		old = rein_json_parse(text, len, &e);
		rein_free(text);
		if (old == NULL) {
			fprintf(stderr, "%s: not JSON: %s\n", path, e.msg);
			ex = 2;
			goto out;
		}
	}
	if (rein_io_new(&io, &e) != REIN_OK || rein_tools_lock(io, spec, &cur, &e) != REIN_OK) {
		fprintf(stderr, "rein tools %s: %s\n", check ? "check" : "lock", e.msg);
		goto out;
	}
	if (!check) {
		char *text = rein_json_dump_flags(cur, JSON_INDENT(2) | JSON_SORT_KEYS);
		FILE *f = text ? fopen(path, "w") : NULL;
		if (f == NULL || fputs(text, f) == EOF || fputc('\n', f) == EOF) {
			fprintf(stderr, "rein tools lock: cannot write %s\n", path);
			if (f)
				fclose(f);
			rein_free(text);
			goto out;
		}
		rein_free(text);
		if (fclose(f) != 0) {
			fprintf(stderr, "rein tools lock: cannot write %s\n", path);
			goto out;
		}
		printf("%s: %zu tool(s) locked\n", path, json_object_size(json_object_get(cur, "tools")));
		ex = 0;
		goto out;
	}
	int breaking = rein_tools_lock_diff(old, cur, &report);
	size_t i;
	json_t *r;
	json_array_foreach(report, i, r)
		printf("%s: %s%s\n", json_string_value(json_object_get(r, "tool")),
		       json_string_value(json_object_get(r, "change")),
		       json_is_true(json_object_get(r, "breaking")) ? " [breaking]" : "");
	if (breaking)
		printf("%d breaking change(s) since %s\n", breaking, path);
	else
		printf("ok: no breaking change since %s\n", path);
	ex = breaking ? 1 : 0;
out:
	json_decref(report);
	json_decref(old);
	json_decref(cur);
	rein_io_free(io);
	rein_spec_free(spec);
	rein_err_clear(&e);
	rein_script_free(sb);
	return ex;
}
