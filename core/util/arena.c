/*
 * Region allocator (see arena.h): a list of blocks, bump allocation inside
 * the newest; oversized requests get a block of their own.
 */
#include "core/util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kl_arena_block {
    struct kl_arena_block *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

void kl_arena_init(struct kl_arena *a, size_t block_size, size_t max_total)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->used_total = 0;
    a->max_total = max_total;
}

void kl_arena_free(struct kl_arena *a)
{
    struct kl_arena_block *b = a->head, *next;
    for (; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->used_total = 0;
}

void kl_arena_reset(struct kl_arena *a)
{
    struct kl_arena_block *keep = a->head, *b, *next;
    if (keep == NULL)
        return;
    /* keep the oldest block (the one of the default size), free the rest */
    while (keep->next != NULL)
        keep = keep->next;
    for (b = a->head; b != keep; b = next) {
        next = b->next;
        free(b);
    }
    keep->used = 0;
    a->head = keep;
    a->used_total = 0;
}

void *kl_arena_alloc(struct kl_arena *a, size_t n)
{
    struct kl_arena_block *b = a->head;
    size_t need = (n + 7) & ~(size_t)7;
    void *p;

    if (need < n || (a->max_total != 0 && need > a->max_total - a->used_total))
        return NULL;
    if (b == NULL || b->size - b->used < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        b = malloc(sizeof *b + size);
        if (b == NULL)
            return NULL;
        b->size = size;
        b->used = 0;
        if (a->head != NULL && need > a->block_size) {
            /* an oversized block goes behind the current one, which stays open */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    p = (char *)b->data + b->used;
    b->used += need;
    a->used_total += need;
    return p;
}

char *kl_arena_strndup(struct kl_arena *a, const char *s, size_t n)
{
    char *p = kl_arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
