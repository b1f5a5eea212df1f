/*
 * A bump allocator for short-lived data (JSON trees, a chunk's cells and
 * strings): many small allocations, freed together by a reset that keeps the
 * blocks for reuse. Blocks never move. A cap bounds what network input can
 * make it hold. Not thread-safe; not for objects that need their own lifetime.
 */
#ifndef KL_UTIL_ARENA_H
#define KL_UTIL_ARENA_H

#include <stddef.h>

struct kl_arena_block;

struct kl_arena {
    struct kl_arena_block *head; /* all blocks, in allocation order */
    struct kl_arena_block *cur;  /* the block allocations come from */
    size_t block_size;           /* size of a normal block */
    size_t total;                /* bytes held in blocks */
    size_t max;                  /* allocations that would pass this fail */
};

/* `block_size` 0 means 64 KiB; `max` 0 means no limit. */
void kl_arena_init(struct kl_arena *a, size_t block_size, size_t max);
/* Frees every block. The arena may be used again after kl_arena_init. */
void kl_arena_free(struct kl_arena *a);
/* Forgets every allocation but keeps the blocks: pointers handed out before
 * are no longer valid after the call. */
void kl_arena_reset(struct kl_arena *a);

/* After a reset: frees the blocks past the first `keep` bytes, and every
 * block made larger than block_size for one big allocation, so one large
 * chunk does not keep its memory for good. */
void kl_arena_trim(struct kl_arena *a, size_t keep);

/* `n` bytes aligned to 8, or NULL when out of memory or past `max`. */
void *kl_arena_alloc(struct kl_arena *a, size_t n);
/* A copy of `n` bytes followed by a NUL, or NULL. */
char *kl_arena_strndup(struct kl_arena *a, const char *s, size_t n);

/* Bytes handed out since the last reset (for tests and limits). */
size_t kl_arena_used(const struct kl_arena *a);

#endif
