/* The rein command: one file per command group, dispatched from main.c. */
#ifndef REIN_CLI_H
#define REIN_CLI_H

int rein_cmd_schema(int argc, char **argv);
int rein_cmd_tools(int argc, char **argv);
int rein_cmd_event_types(int argc, char **argv);
/* db: the global --db flag, or NULL */
int rein_cmd_metrics(int argc, char **argv, const char *db);
int rein_cmd_shred(int argc, char **argv, const char *db);
/* The keyring for the database at db ($REIN_KEYS, else DB.keys): 0, else 1
 * with the reason on stderr. Caller closes with rein_keyring_close. */
typedef struct rein_keyring rein_keyring;
int rein_cli_keyring(const char *db, rein_keyring **out);

#endif
