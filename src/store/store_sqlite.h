/*
 * The SQLite backend of the store (store.h): embedded, one file, WAL mode.
 * Most callers open it through rein_store_open("sqlite:PATH" or "PATH").
 */
#ifndef REIN_STORE_SQLITE_H
#define REIN_STORE_SQLITE_H

#include "store.h"

/*
 * Opens (creating if needed) the SQLite store at path in WAL mode,
 * synchronous=FULL unless opts->no_sync (opts may be NULL). A store of
 * another schema version is refused with REIN_EINVAL. Caller closes.
 */
int rein_store_open_sqlite(const char *path, const rein_store_opts *opts, rein_store **out,
			   rein_err *err);

#endif
