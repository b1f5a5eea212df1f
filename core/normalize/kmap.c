/*
 * The open-addressing hash map the normaliser's caches use: (scope, bytes)
 * keys, copied, to a uint32_t value. Entries are only added; freeing the map
 * drops them all. Not a general container: no removal, no iteration.
 */
#include "core/normalize/internal.h"

static uint64_t hash_bytes(uint32_t scope, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)scope * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

bool kl_norm_kmap_get(const struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t *val)
{
    if (m->cap == 0)
        return false;
    uint64_t h = hash_bytes(scope, k, n);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct kmap_ent *e = &m->e[i];
        if (e->hash == 0)
            return false;
        if (e->hash == h && e->scope == scope && e->klen == n && memcmp(e->key, k, n) == 0) {
            *val = e->val;
            return true;
        }
    }
}

int kl_norm_kmap_put(struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct kmap_ent *ne = calloc(cap, sizeof *ne);
        if (ne == NULL)
            return KL_ERR_NOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].hash == 0)
                continue;
            size_t j = m->e[i].hash & (cap - 1);
            while (ne[j].hash != 0)
                j = (j + 1) & (cap - 1);
            ne[j] = m->e[i];
        }
        free(m->e);
        m->e = ne;
        m->cap = cap;
    }
    uint64_t h = hash_bytes(scope, k, n);
    size_t i = h & (m->cap - 1);
    while (m->e[i].hash != 0)
        i = (i + 1) & (m->cap - 1);
    char *copy = kl_norm_dupn(k, n);
    if (copy == NULL)
        return KL_ERR_NOMEM;
    m->e[i] = (struct kmap_ent){h, copy, (uint32_t)n, scope, val};
    m->n++;
    return KL_OK;
}

void kl_norm_kmap_free(struct kmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->e[i].key);
    free(m->e);
    memset(m, 0, sizeof *m);
}
