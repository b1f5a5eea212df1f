/*
 * Reading the dlt 0.5.4 fixture records (see dlt_fixture.h).
 */
#include "tests/support/dlt_fixture.h"
#include "tests/support/test_support.h"
#include "core/normalize/coerce.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *text_of(const cJSON *o, const char *key)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return v != NULL ? v : "";
}

size_t kl_dlt_records_read(const char *dir, struct kl_dlt_record *out, size_t cap)
{
    char path[160], *text, *save = NULL, *line;
    size_t n = 0;

    snprintf(path, sizeof path, "%s/records.jsonl", dir);
    text = kl_test_read_fixture(path, NULL);
    for (line = strtok_r(text, "\n", &save); line != NULL && n < cap;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(line);
        struct kl_dlt_record *c = &out[n++];
        const char *ts;
        int64_t us = 0;

        if (r == NULL)
            fail_msg("%s: a line that is not JSON", path);
        memset(c, 0, sizeof *c);
        snprintf(c->shard_id, sizeof c->shard_id, "%s", text_of(r, "shard_id"));
        snprintf(c->sequence, sizeof c->sequence, "%s", text_of(r, "sequence_number"));
        snprintf(c->partition_key, sizeof c->partition_key, "%s", text_of(r, "partition_key"));
        snprintf(c->loaded_in, sizeof c->loaded_in, "%s", text_of(r, "loaded_in_load_id"));
        snprintf(c->consumed_by, sizeof c->consumed_by, "%s",
                 text_of(r, "consumed_by_foreign_load_id"));
        c->data = strdup(text_of(r, "data"));
        ts = text_of(r, "approximate_arrival_timestamp");
        if (kl_iso_parse(ts, strlen(ts), &us) != KL_ISO_DATETIME)
            fail_msg("%s: arrival time %s", path, ts);
        c->arrival_ms = us / 1000;
        cJSON_Delete(r);
    }
    free(text);
    return n;
}

void kl_dlt_records_free(struct kl_dlt_record *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].data);
        r[i].data = NULL;
    }
}
