/*
 * rein shred --tenant T: crypto-shredding. Destroys the tenant's key for the
 * protected payloads of its runs (the real values behind the redaction
 * placeholders, see docs/security.md): the placeholders stay, every hash
 * chain still verifies, and those runs can still be shown but no longer be
 * resumed. Also where the CLI finds the keyring: $REIN_KEYS, else the
 * database path with ".keys" appended.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static const char usage_text[] =
	"usage: rein shred --tenant T [--db PATH]\n"
	"\n"
	"Destroys tenant T's key for protected payloads (crypto-shredding, for retention\n"
	"or erasure requests): the redacted values of its runs can never be read again.\n"
	"Their events keep their placeholders, 'rein audit verify' still passes, 'rein\n"
	"show' still works, and 'rein resume' of such a run fails. The keys live in\n"
	"$REIN_KEYS, else in the directory PATH.keys beside the database.\n"
	"Prints {\"tenant\": T, \"shredded\": true|false} (false: T had no key).\n";

int rein_cli_keyring(const char *db, rein_keyring **out)
{
	const char *env = getenv("REIN_KEYS");
	char dir[4096];
	if (env && *env) {
		snprintf(dir, sizeof dir, "%s", env);
	} else {
		if (strncmp(db, "sqlite:", 7) == 0)
			db += 7;
		if ((size_t)snprintf(dir, sizeof dir, "%s.keys", db) >= sizeof dir) {
			fputs("rein: database path too long\n", stderr);
			return 1;
		}
	}
	rein_err e = {0};
	if (rein_keyring_open(dir, out, &e) != REIN_OK) {
		fprintf(stderr, "rein: %s\n", e.msg);
		return 1;
	}
	return 0;
}

int rein_cmd_shred(int argc, char **argv, const char *db)
{
	static const struct option longopts[] = {{"tenant", required_argument, NULL, 't'},
						 {"db", required_argument, NULL, 'd'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	const char *tenant = NULL;
	rein_keyring *k = NULL;
	int ex = 2, c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 't') {
			tenant = optarg;
		} else if (c == 'd') {
			db = optarg;
		} else if (c == 'h') {
			fputs(usage_text, stdout);
			ex = 0;
			goto out;
		} else {
			fputs(usage_text, stderr);
			goto out;
		}
	}
	if (tenant == NULL || optind != argc) {
		fprintf(stderr, "rein shred: %s\n%s", tenant ? "unexpected argument" : "--tenant is required",
			usage_text);
		goto out;
	}
	if (!rein_tenant_valid(tenant)) {
		fprintf(stderr, "rein shred: bad tenant name '%s' (1 to 63 of A-Z a-z 0-9 . _ -)\n",
			tenant);
		goto out;
	}
	if (db == NULL) {
		const char *env = getenv("REIN_DB");
		db = env && *env ? env : "rein.db";
	}
	ex = 1;
	if (rein_cli_keyring(db, &k) != 0)
		goto out;
	rein_err e = {0};
	bool existed = false;
	if (rein_keyring_shred(k, tenant, &existed, &e) != REIN_OK) {
		fprintf(stderr, "rein shred: %s\n", e.msg);
		goto out;
	}
	json_t *j = json_pack("{s:s, s:b}", "tenant", tenant, "shredded", existed);
	char *text = j ? rein_json_dump(j) : NULL;
	json_decref(j);
	if (text == NULL) {
		fputs("rein shred: out of memory\n", stderr);
		goto out;
	}
	printf("%s\n", text);
	rein_free(text);
	ex = 0;
out:
	rein_keyring_close(k);
	return ex;
}
