/*
 * A byte budget shared by the threads of a process: what GetRecords pages
 * may hold at once (KL_MEMORY_MAX). A reader reserves before it asks for a
 * page and waits while the budget is taken; a page that grows past its
 * reservation takes more only while it fits (kl_membudget_try_charge), and
 * what it holds is given back when its chunk is freed. A reservation larger
 * than the whole budget is granted when nothing else is held, so one huge
 * record still loads, alone. Thread-safe.
 */
#ifndef KL_UTIL_MEMBUDGET_H
#define KL_UTIL_MEMBUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kl_err;

struct kl_membudget;

struct kl_membudget_stats {
    size_t limit;
    size_t held;      /* bytes reserved or charged now */
    size_t peak;      /* the most held at once */
    uint64_t waits;   /* reservations that had to wait */
    uint64_t wait_ms; /* time spent waiting, all reservations */
    uint64_t over;    /* bytes charged past a reservation (pages larger than foreseen) */
    uint64_t refused; /* try-charges that did not fit */
};

/* `limit` bytes; 0: no limit (reservations never wait). */
struct kl_membudget *kl_membudget_create(size_t limit, struct kl_err *err);
/* NULL is a no-op. Nothing may be held any more. */
void kl_membudget_destroy(struct kl_membudget *b);

/* Waits until `n` more bytes fit (or nothing is held), then holds them.
 * Gives up with KL_ERR_CANCELLED once `*cancel` is set (checked every
 * 100 ms; may be NULL). A NULL budget grants at once. */
int kl_membudget_reserve(struct kl_membudget *b, size_t n, const atomic_bool *cancel,
                         struct kl_err *err);
/* Holds `n` more bytes without waiting (past the limit if need be): for a
 * page that turned out larger than what was reserved for it. */
void kl_membudget_charge(struct kl_membudget *b, size_t n);
/* Holds `n` more bytes when they fit under the limit, without waiting;
 * false (and nothing held) when they do not. A NULL budget grants. */
bool kl_membudget_try_charge(struct kl_membudget *b, size_t n);
/* Gives back `n` bytes reserved or charged before. */
void kl_membudget_release(struct kl_membudget *b, size_t n);

void kl_membudget_stats(struct kl_membudget *b, struct kl_membudget_stats *out);

#endif
