/*
 * The names of the shared row contract's enums (see rows.h).
 */
#include "core/normalize/rows.h"

#include <stddef.h>
#include <string.h>

const char *kl_write_disposition_name(enum kl_write_disposition d)
{
    switch (d) {
    case KL_WRITE_APPEND:
        return "append";
    case KL_WRITE_MERGE:
        return "merge";
    case KL_WRITE_REPLACE:
        return "replace";
    }
    return "?";
}

int kl_write_disposition_parse(const char *name, enum kl_write_disposition *out)
{
    static const enum kl_write_disposition all[] = {KL_WRITE_APPEND, KL_WRITE_MERGE,
                                                    KL_WRITE_REPLACE};
    for (size_t i = 0; name != NULL && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, kl_write_disposition_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}
