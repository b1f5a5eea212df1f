/*
 * The PostgreSQL destination (libpq). A dataset is a schema; rows go in with
 * COPY (text format) inside the chunk's transaction; DDL, `_dlt_version`
 * rows and replace truncations run under a transaction-level advisory lock
 * per dataset (pg_advisory_xact_lock(0x4b4c0001, hash of the dataset name)),
 * so any number of connections and processes may write one dataset. One
 * `struct kl_dest` is one connection; it reconnects by itself after the
 * connection was lost (the failed call returns KL_ERR_UNAVAILABLE).
 */
#ifndef KL_DEST_PG_H
#define KL_DEST_PG_H

#include "core/dest/dest.h"

/* Connects now, with a libpq connection string or URI (DATABASE_URL).
 * `opts` may be NULL for the defaults; it is copied. */
struct kl_dest *kl_dest_pg_create(const char *conninfo, const struct kl_dest_options *opts,
                                  struct kl_err *err);

/* A factory whose open() connects with the same settings. */
struct kl_dest_factory *kl_dest_pg_factory_create(const char *conninfo,
                                                  const struct kl_dest_options *opts,
                                                  struct kl_err *err);

#endif
