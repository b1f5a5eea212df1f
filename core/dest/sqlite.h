/*
 * The SQLite destination, the embedded default when DATABASE_URL is unset.
 * One database file for everything: a dataset's tables are named
 * "<dataset>.<table>" (so `SELECT * FROM "kinesis.my_stream"`), which keeps
 * every chunk's rows and its checkpoint in one file and one transaction.
 * WAL journal, synchronous=NORMAL (a power loss may undo the last commits,
 * rows and checkpoints alike, so nothing is lost or doubled). Writers take
 * the database write lock for the whole chunk (BEGIN IMMEDIATE) and wait up
 * to busy_timeout_ms for it: one writer at a time, any number of readers.
 * Types: text TEXT, bigint BIGINT, double DOUBLE, bool BOOLEAN (0/1),
 * timestamp TIMESTAMP holding ISO-8601 text (2024-05-01T12:00:00.000000+00:00),
 * binary BLOB, decimal and json TEXT. A NaN double is stored as NULL (SQLite
 * has no NaN).
 */
#ifndef KL_DEST_SQLITE_H
#define KL_DEST_SQLITE_H

#include "core/dest/dest.h"

/* Opens (creating if needed) the database file at `path`. `opts` may be NULL. */
struct kl_dest *kl_dest_sqlite_create(const char *path, const struct kl_dest_options *opts,
                                      struct kl_err *err);

struct kl_dest_factory *kl_dest_sqlite_factory_create(const char *path,
                                                      const struct kl_dest_options *opts,
                                                      struct kl_err *err);

#endif
