/* The rein command: one file per command group, dispatched from main.c. */
#ifndef REIN_CLI_H
#define REIN_CLI_H

int rein_cmd_schema(int argc, char **argv);
int rein_cmd_tools(int argc, char **argv);
int rein_cmd_event_types(int argc, char **argv);
/* db: the global --db flag, or NULL */
int rein_cmd_metrics(int argc, char **argv, const char *db);
int rein_cmd_trace(int argc, char **argv, const char *db);
/* rein replay RUN (cmd_replay.c) */
int rein_cmd_replay(int argc, char **argv, const char *db);
/* rein eval SUITE (cmd_eval.c); db: the --db flag or NULL (a scratch store) */
int rein_cmd_eval(int argc, char **argv, const char *db);
/* The online trace exporter (cmd_trace.c): when OTEL_EXPORTER_OTLP_ENDPOINT
 * or _TRACES_ENDPOINT is set (and REIN_TRACE_EXPORT is not 0), attach chains
 * it in front of o->on_commit; detach, after the runner is freed, drains and
 * stops it. */
struct rein_runner_opts;
void rein_cli_trace_attach(struct rein_runner_opts *o);
void rein_cli_trace_detach(void);
/* rein audit export RUN (argv[0] "export"); db: the store's path or NULL */
int rein_cmd_audit_export(int argc, char **argv, const char *db);
/* kill, unkill, kills (cmd names which); db as for metrics */
int rein_cmd_kill(const char *cmd, int argc, char **argv, const char *db);
/* approvals, approve, deny (cmd_approve.c; cmd names which); db as for metrics */
int rein_cmd_approve(const char *cmd, int argc, char **argv, const char *db);

/* rein policy load|test (cmd_policy.c); db: the store's path */
int rein_cmd_policy(int argc, char **argv, const char *db);
int rein_cmd_shred(int argc, char **argv, const char *db);
/* rein gc (cmd_gc.c): retention */
int rein_cmd_gc(int argc, char **argv, const char *db);
/* TIME as ms since the epoch (main.c): YYYY-MM-DDTHH:MM:SS[.mmm]Z or an age
 * N{s,m,h,d} before now; false when it is neither. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
bool rein_cli_parse_time(const char *t, int64_t now, int64_t *ms);
/* Prints j (a reference it takes; NULL: out of memory) as one line of
 * compact JSON: 0, else 1 with "out of memory" on stderr. */
int rein_cli_print_json(json_t *j);
/* The keyring for the database at db ($REIN_KEYS, else DB.keys): 0, else 1
 * with the reason on stderr. Caller closes with rein_keyring_close. */
typedef struct rein_keyring rein_keyring;
int rein_cli_keyring(const char *db, rein_keyring **out);

/* rein deploy, rein deployments (cmd_deploy.c) */
int rein_cmd_deploy(int argc, char **argv, const char *db);
int rein_cmd_deployments(int argc, char **argv, const char *db);
/* rein run NAME: when arg names no file or directory and the store at db
 * (a path) has NAME deployed, picks the version for start key key (NULL: a
 * new run id is made) and loads its spec with sb into *spec. Returns 1 so
 * (the run's id in id[64], *candidate which version it took), 0 when arg is
 * not a deployment (load it as a directory), -1 after printing an error. */
struct rein_script;
struct rein_spec;
struct rein_store;
int rein_cli_deployed_spec(const char *arg, const char *db, const char *key,
			   struct rein_script *sb, struct rein_spec **spec, char id[64],
			   bool *candidate);
/* After a run of deployed workflow name: applies its rollback rule (a
 * rollback or an error is said on stderr). */
void rein_cli_deploy_after(struct rein_store *st, const char *name);

#endif
