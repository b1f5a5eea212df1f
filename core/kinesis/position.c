/*
 * Shard positions (see position.h).
 */
#include "core/kinesis/position.h"

#include <stdio.h>
#include <string.h>

int kl_seq_cmp(const char *a, const char *b)
{
    size_t la, lb;
    while (*a == '0' && a[1] != '\0')
        a++;
    while (*b == '0' && b[1] != '\0')
        b++;
    la = strlen(a);
    lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

int kl_position_cmp(const char *seq_a, int64_t sub_a, const char *seq_b, int64_t sub_b)
{
    int c;
    if (seq_a[0] == '\0' || seq_b[0] == '\0')
        return (seq_a[0] != '\0') - (seq_b[0] != '\0');
    c = kl_seq_cmp(seq_a, seq_b);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return (sub_a > sub_b) - (sub_a < sub_b);
}

void kl_position_set(struct kl_shard_position *p, const char *shard_id, const char *sequence,
                     int64_t sub_sequence)
{
    snprintf(p->shard_id, sizeof p->shard_id, "%s", shard_id != NULL ? shard_id : "");
    snprintf(p->sequence, sizeof p->sequence, "%s", sequence != NULL ? sequence : "");
    p->sub_sequence = sub_sequence;
}
