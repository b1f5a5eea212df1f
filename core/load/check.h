/*
 * Admission of a load job's parameters: everything the job would later fail
 * on, checked before it is queued, and the names normalised the way the
 * job's destination will use them. Shared by the REST codec and the `load`
 * command, so both refuse the same things. Not the parsing of a request
 * (api/load_codec.c, server/cmd_load.c) and not the ranges themselves
 * (params.h): this runs after both.
 */
#ifndef KL_LOAD_CHECK_H
#define KL_LOAD_CHECK_H

#include <stddef.h>

#include "core/load/params.h"

/* The largest max_number_of_messages: the job's stored parameters keep 15
 * significant digits of a number (cJSON prints "%.15g" when that reads back
 * within its tolerance), so 9007199254740991 would run as 9007199254740990. */
#define KL_MAX_MESSAGES_MAX 999999999999999LL

/* Called once per problem: `field` is the LoadRequest field ("dataset_name",
 * "table_name", ...), `msg` says what is wrong, starting with a verb
 * ("must be ...", "normalises to ..."). Both are valid during the call only. */
typedef void (*kl_load_problem_fn)(void *arg, const char *field, const char *msg);

/* Checks `p` (already range-checked by the parser that filled it) the way a
 * job will use it, and normalises it in place:
 * - the ranges of kl_load_params_validate, and max_number_of_messages at
 *   most KL_MAX_MESSAGES_MAX;
 * - dataset_name becomes dlt's snake_case normalisation of itself
 *   (normalize_table_identifier: "Sales" -> "sales", "MySales" -> "my_sales"),
 *   which the destination must accept (not pg_*, sqlite_*, information_schema);
 * - the root table (table_name, else the stream name), normalised as the
 *   normaliser does (normalize_tables_path), must be a name the destination
 *   accepts and not a system table (_dlt*, _kinesis*); table_name itself is
 *   kept as given (the job normalises it);
 * - an AT_TIMESTAMP start must be after the epoch (ms > 0): the job reads a
 *   stored 0 back as LATEST, and Kinesis refuses negative timestamps;
 * - the parameters must read back unchanged through kl_load_params_to_json
 *   and kl_load_params_from_json, which is how the job gets them.
 * Each problem goes to `problem` (may be NULL). Returns KL_OK, KL_ERR_INVALID
 * after reporting at least one problem (`*p` may then be half normalised),
 * or KL_ERR_NOMEM. */
int kl_load_params_check(struct kl_load_params *p, kl_load_problem_fn problem, void *arg);

/* dlt's normalisation of a dataset name into `out` (KL_IDENT_MAX bytes), and
 * the destination's rules on the result. On KL_ERR_INVALID `why` (may be
 * NULL) says what is wrong, as a phrase starting with a verb. `out` is
 * written only on KL_OK. */
int kl_load_dataset_normalize(const char *name, char *out, char *why, size_t why_cap);

#endif
