/*
 * rein schema check: validates JSON Lines against a JSON Schema. One result
 * line per document ("ok", or "line N: POINTER: message (keyword)" per
 * error). Exit 0 when every document is valid, 1 when one is not, 2 for bad
 * usage or a schema that cannot be read or compiled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

int rein_cmd_schema(int argc, char **argv);

#define MAX_MAPS 64

static const char usage_text[] =
	"usage: rein schema check [--draft 2020-12|7] [--map-uri PREFIX=DIR]... SCHEMA.json "
	"[FILE.jsonl|-]\n"
	"\n"
	"Validates each line of FILE.jsonl (or standard input when FILE is '-' or absent)\n"
	"as one JSON document against SCHEMA.json, printing one line per document:\n"
	"  ok                                  the document is valid\n"
	"  line N: POINTER: message (keyword)  one line per error, POINTER is a JSON Pointer\n"
	"Blank lines are skipped.\n"
	"\n"
	"options:\n"
	"  --draft 2020-12|7       JSON Schema draft (default: the schema's $schema, else 2020-12)\n"
	"  --map-uri PREFIX=DIR    resolve $ref URIs starting with PREFIX to files under DIR\n"
	"                          (repeatable), e.g. --map-uri https://example.com/schemas/=./schemas\n"
	"  -h, --help              show this help\n"
	"\n"
	"Relative $refs resolve in the schema file's directory; $ref never uses the network.\n"
	"The 2020-12 and draft-07 meta-schemas are built in.\n"
	"\n"
	"exit status: 0 all documents valid, 1 some document invalid,\n"
	"             2 bad usage, unreadable input, or invalid schema\n";

static int usage_error(const char *fmt, const char *arg)
{
	fputs("rein schema: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'rein schema --help'.\n", stderr);
	return 2;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return rein_strdup(".");
	if (slash == path)
		return rein_strdup("/");
	return rein_strndup(path, (size_t)(slash - path));
}

/* Validates every line of in; returns 0, 1 or 2 as the command does. */
static int check_stream(const rein_schema *s, FILE *in, const char *name)
{
	int status = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	while ((n = getline(&line, &cap, in)) >= 0) {
		lineno++;
		size_t len = (size_t)n;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		size_t k = 0;
		while (k < len && (line[k] == ' ' || line[k] == '\t'))
			k++;
		if (k == len)
			continue;
		rein_err err = {0};
		json_t *doc = rein_json_parse(line, len, &err);
		if (doc == NULL) {
			printf("line %ld: invalid JSON: %s\n", lineno, err.msg);
			status = 1;
			continue;
		}
		rein_err se = {0};
		if (rein_schema_check(s, doc, &se, "line %ld", lineno) == REIN_OK) {
			puts("ok");
		} else {
			status = 1;
			if (se.schema.n == 0)
				printf("line %ld: : document is invalid (out of memory for details)\n",
				       lineno);
			for (size_t i = 0; i < se.schema.n; i++)
				printf("line %ld: %s: %s (%s)\n", lineno, se.schema.v[i].pointer,
				       se.schema.v[i].message, se.schema.v[i].keyword);
		}
		rein_err_clear(&se);
		json_decref(doc);
	}
	if (ferror(in)) {
		fprintf(stderr, "rein schema: %s: read error: %s\n", name, strerror(errno));
		status = 2;
	}
	free(line);
	return status;
}

int rein_cmd_schema(int argc, char **argv)
{
	int status = 2;
	rein_schema_map maps[MAX_MAPS];
	char *mapbuf[MAX_MAPS];
	size_t nmaps = 0;
	const char *pos[2];
	int npos = 0;
	int draft = REIN_DRAFT_AUTO;
	char *text = NULL, *base = NULL;
	json_t *schema = NULL;
	rein_schema *s = NULL;
	FILE *in = NULL;

	rein_init();
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_text, stdout);
			status = 0;
			goto out;
		}
	}
	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		status = usage_error(argc < 2 ? "missing subcommand%s" : "unknown subcommand '%s'",
				     argc < 2 ? "" : argv[1]);
		goto out;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		if (strncmp(a, "--draft", 7) == 0 && (a[7] == '\0' || a[7] == '=')) {
			val = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
			if (val == NULL) {
				status = usage_error("--draft needs a value%s", "");
				goto out;
			}
			if (strcmp(val, "2020-12") == 0)
				draft = REIN_DRAFT_2020_12;
			else if (strcmp(val, "7") == 0 || strcmp(val, "draft-07") == 0 ||
				 strcmp(val, "07") == 0)
				draft = REIN_DRAFT_7;
			else {
				status = usage_error("unknown draft '%s' (use 2020-12 or 7)", val);
				goto out;
			}
		} else if (strncmp(a, "--map-uri", 9) == 0 && (a[9] == '\0' || a[9] == '=')) {
			val = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
			const char *eq = val ? strchr(val, '=') : NULL;
			if (val == NULL || eq == NULL || eq == val || eq[1] == '\0') {
				status = usage_error("--map-uri needs PREFIX=DIR, got '%s'",
						     val ? val : "");
				goto out;
			}
			if (nmaps == MAX_MAPS) {
				status = usage_error("too many --map-uri options%s", "");
				goto out;
			}
			char *copy = rein_strdup(val);
			if (copy == NULL) {
				fputs("rein schema: out of memory\n", stderr);
				goto out;
			}
			mapbuf[nmaps] = copy;
			copy[eq - val] = '\0';
			maps[nmaps].prefix = copy;
			maps[nmaps].dir = copy + (eq - val) + 1;
			nmaps++;
		} else if (a[0] == '-' && a[1] != '\0') {
			status = usage_error("unknown option '%s'", a);
			goto out;
		} else {
			if (npos == 2) {
				status = usage_error("unexpected argument '%s'", a);
				goto out;
			}
			pos[npos++] = a;
		}
	}
	if (npos == 0) {
		status = usage_error("missing SCHEMA.json%s", "");
		goto out;
	}

	rein_err err = {0};
	size_t len;
	if (rein_file_read(pos[0], &text, &len, &err) != REIN_OK) {
		fprintf(stderr, "rein schema: cannot read schema: %s\n", err.msg);
		goto out;
	}
	if ((schema = rein_json_parse(text, len, &err)) == NULL) {
		fprintf(stderr, "rein schema: %s: invalid JSON: %s\n", pos[0], err.msg);
		goto out;
	}
	if ((base = dir_of(pos[0])) == NULL) {
		fputs("rein schema: out of memory\n", stderr);
		goto out;
	}
	rein_schema_opts opts = {
		.draft = draft, .base_dir = base, .maps = maps, .nmaps = nmaps, .name = pos[0],
	};
	if (rein_schema_compile(schema, &opts, &s, &err) != REIN_OK) {
		fprintf(stderr, "rein schema: invalid schema: %s\n", err.msg);
		goto out;
	}
	const char *input = npos == 2 ? pos[1] : "-";
	if (strcmp(input, "-") == 0) {
		status = check_stream(s, stdin, "<stdin>");
	} else {
		if ((in = fopen(input, "r")) == NULL) {
			fprintf(stderr, "rein schema: cannot open %s: %s\n", input, strerror(errno));
			goto out;
		}
		status = check_stream(s, in, input);
	}
	fflush(stdout);
out:
	if (in)
		fclose(in);
	for (size_t i = 0; i < nmaps; i++)
		rein_free(mapbuf[i]);
	rein_schema_free(s);
	json_decref(schema);
	rein_free(text);
	rein_free(base);
	return status;
}
