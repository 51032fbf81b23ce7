/* The rein command: one file per command group, dispatched from main.c. */
#ifndef REIN_CLI_H
#define REIN_CLI_H

int rein_cmd_schema(int argc, char **argv);
int rein_cmd_tools(int argc, char **argv);
int rein_cmd_event_types(int argc, char **argv);
/* db: the global --db flag, or NULL */
int rein_cmd_metrics(int argc, char **argv, const char *db);

/* rein policy load|test (cmd_policy.c); db: the store's path */
int rein_cmd_policy(int argc, char **argv, const char *db);

#endif
