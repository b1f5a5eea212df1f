/*
 * Shard lineage queries (see lineage.h).
 */
#include "core/kinesis/lineage.h"

#include <string.h>

long kl_shard_index(const struct kl_shard_list *shards, const char *id)
{
    for (size_t i = 0; i < shards->n; i++) {
        if (strcmp(shards->shards[i].id, id) == 0)
            return (long)i;
    }
    return -1;
}

bool kl_shard_is_closed(const struct kl_shard *s)
{
    return s->ending_seq[0] != '\0';
}

bool kl_shard_parents_drained(const struct kl_shard_list *shards, const struct kl_shard *s,
                              bool (*is_drained)(void *ctx, const char *shard_id), void *ctx)
{
    const char *parents[2] = {s->parent_id, s->adjacent_parent_id};
    for (size_t i = 0; i < 2; i++) {
        if (parents[i][0] == '\0' || kl_shard_index(shards, parents[i]) < 0)
            continue;
        if (!is_drained(ctx, parents[i]))
            return false;
    }
    return true;
}

bool kl_shard_any_parent(const struct kl_shard *s, bool (*pred)(void *ctx, const char *shard_id),
                         void *ctx)
{
    return (s->parent_id[0] != '\0' && pred(ctx, s->parent_id)) ||
           (s->adjacent_parent_id[0] != '\0' && pred(ctx, s->adjacent_parent_id));
}
