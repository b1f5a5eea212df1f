/*
 * The REST documents of openapi.yaml (Job, JobList, StreamList, Stream,
 * StreamState, Readiness), built from the typed results the service returns.
 * The one place that decides their shape: the handlers answer with them and
 * `kinesis-loader load` prints the same Job document. Each function returns
 * a new cJSON tree (the caller deletes it), or NULL when out of memory.
 */
#ifndef KL_API_DOCUMENTS_H
#define KL_API_DOCUMENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/dest/dest.h"
#include "core/kinesis/client.h"
#include "core/store/store.h"

struct cJSON;

/* One check of GET /readyz: the store, the destination, the credentials. */
struct kl_readiness_check {
    const char *name; /* a static string */
    bool ok;
    char detail[256]; /* why not, when !ok */
};

#define KL_READINESS_CHECKS_MAX 8

struct kl_readiness {
    struct kl_readiness_check checks[KL_READINESS_CHECKS_MAX];
    size_t n;
};

/* True when every check is ok. */
bool kl_readiness_ok(const struct kl_readiness *r);

/* Adds a check (ignored past KL_READINESS_CHECKS_MAX); `detail` may be NULL. */
void kl_readiness_add(struct kl_readiness *r, const char *name, bool ok, const char *detail);

struct cJSON *kl_doc_job(const struct kl_store_job *j);
struct cJSON *kl_doc_job_list(const struct kl_store_job_page *page);
struct cJSON *kl_doc_stream_list(const struct kl_string_list *names);
struct cJSON *kl_doc_stream(const struct kl_stream_summary *summary,
                            const struct kl_shard_list *shards);
struct cJSON *kl_doc_stream_state(const char *stream, const char *pipeline, const char *dataset,
                                  const struct kl_dest_state *state);
struct cJSON *kl_doc_readiness(const struct kl_readiness *r);

#endif
