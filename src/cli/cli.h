/* The rein command: one file per command group, dispatched from main.c. */
#ifndef REIN_CLI_H
#define REIN_CLI_H

int rein_cmd_schema(int argc, char **argv);
int rein_cmd_tools(int argc, char **argv);
int rein_cmd_event_types(int argc, char **argv);
int rein_cmd_trace(int argc, char **argv, const char *db);

#endif
