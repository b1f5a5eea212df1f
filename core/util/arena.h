/*
 * A region allocator: many small allocations freed together. Blocks are
 * never moved, so pointers stay valid until kl_arena_reset or _free. A hard
 * cap bounds what network input can make it hold. Not thread-safe.
 */
#ifndef KL_UTIL_ARENA_H
#define KL_UTIL_ARENA_H

#include <stddef.h>

struct kl_arena_block;

struct kl_arena {
    struct kl_arena_block *head; /* block being filled */
    size_t block_size;           /* default size of a new block */
    size_t used_total;           /* bytes handed out since the last reset */
    size_t max_total;            /* allocations beyond this fail; 0 = no cap */
};

void kl_arena_init(struct kl_arena *a, size_t block_size, size_t max_total);
/* Frees every block. */
void kl_arena_free(struct kl_arena *a);
/* Forgets every allocation but keeps the first block for reuse. */
void kl_arena_reset(struct kl_arena *a);

/* Returns `n` bytes aligned to 8, or NULL when out of memory or over the cap. */
void *kl_arena_alloc(struct kl_arena *a, size_t n);
/* Copies `n` bytes and appends a NUL; NULL on failure. */
char *kl_arena_strndup(struct kl_arena *a, const char *s, size_t n);

#endif
