/*
 * rein event-types: prints the table of event types (src/engine/events.c) as
 * Markdown. docs/events.md is this output under a heading, and
 * tests/cli/event_types.sh fails when the two differ.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine.h"

static const char usage_text[] =
	"usage: rein event-types\n"
	"\n"
	"Prints the table of event types a run's log can hold (type, who decides it,\n"
	"whether it names a step, its payload fields) as Markdown: docs/events.md.\n";

int rein_cmd_event_types(int argc, char **argv)
{
	rein_buf b = {0};
	int ex = 2;
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		ex = 0;
		goto out;
	}
	if (argc != 1) {
		fprintf(stderr, "rein event-types: unexpected argument '%s'\n%s", argv[1], usage_text);
		goto out;
	}
	if (rein_event_types_markdown(&b) != REIN_OK) {
		fputs("rein event-types: out of memory\n", stderr);
		ex = 1;
		goto out;
	}
	ex = fwrite(b.p, 1, b.len, stdout) == b.len && fflush(stdout) == 0 ? 0 : 1;
out:
	rein_buf_free(&b);
	return ex;
}
