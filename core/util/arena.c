/*
 * Bump allocation over a list of blocks. A reset rewinds to the first block
 * and reuses the list in order, so a steady workload stops calling malloc.
 */
#include "core/util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kl_arena_block {
    struct kl_arena_block *next;
    size_t cap;
    size_t used;
    _Alignas(max_align_t) unsigned char data[];
};

#define DEFAULT_BLOCK ((size_t)64 * 1024)

void kl_arena_init(struct kl_arena *a, size_t block_size, size_t max)
{
    a->head = NULL;
    a->cur = NULL;
    a->block_size = block_size ? block_size : DEFAULT_BLOCK;
    a->total = 0;
    a->max = max;
}

void kl_arena_free(struct kl_arena *a)
{
    struct kl_arena_block *b = a->head;
    while (b != NULL) {
        struct kl_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->cur = NULL;
    a->total = 0;
}

void kl_arena_reset(struct kl_arena *a)
{
    for (struct kl_arena_block *b = a->head; b != NULL; b = b->next)
        b->used = 0;
    a->cur = a->head;
}

void kl_arena_trim(struct kl_arena *a, size_t keep)
{
    struct kl_arena_block **link = &a->head;
    size_t kept = 0;

    while (*link != NULL) {
        struct kl_arena_block *b = *link;
        if (b->used == 0 && (kept + b->cap > keep || b->cap > a->block_size)) {
            *link = b->next;
            a->total -= b->cap;
            if (a->cur == b)
                a->cur = NULL;
            free(b);
            continue;
        }
        kept += b->cap;
        link = &b->next;
    }
    if (a->cur == NULL)
        a->cur = a->head;
}

size_t kl_arena_used(const struct kl_arena *a)
{
    size_t n = 0;
    for (const struct kl_arena_block *b = a->head; b != NULL; b = b->next) {
        n += b->used;
        if (b == a->cur)
            break;
    }
    return n;
}

/* Moves to the next block that fits `n`, reusing old blocks before making
 * a new one, which is linked right after the current block. */
static struct kl_arena_block *next_block(struct kl_arena *a, size_t n)
{
    struct kl_arena_block *b = a->cur ? a->cur->next : a->head;
    while (b != NULL && b->cap < n) {
        b->used = 0;
        b = b->next;
    }
    if (b != NULL) {
        b->used = 0;
        a->cur = b;
        return b;
    }
    size_t cap = n > a->block_size ? n : a->block_size;
    if (a->max && a->total + cap > a->max)
        return NULL;
    b = malloc(sizeof *b + cap);
    if (b == NULL)
        return NULL;
    b->cap = cap;
    b->used = 0;
    if (a->cur == NULL) {
        b->next = a->head;
        a->head = b;
    } else {
        b->next = a->cur->next;
        a->cur->next = b;
    }
    a->cur = b;
    a->total += cap;
    return b;
}

void *kl_arena_alloc(struct kl_arena *a, size_t n)
{
    struct kl_arena_block *b = a->cur;
    n = (n + 7u) & ~(size_t)7u;
    if (n == 0)
        n = 8;
    if (b == NULL || b->cap - b->used < n) {
        b = next_block(a, n);
        if (b == NULL)
            return NULL;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *kl_arena_strndup(struct kl_arena *a, const char *s, size_t n)
{
    char *p = kl_arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
