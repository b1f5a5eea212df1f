/*
 * `kinesis-loader load` refuses what POST /streams/{stream}/loads refuses,
 * before it connects to anything: exit 2 and a message naming the option,
 * one case per field. Runs the real binary; needs no services (the check
 * comes before Kinesis, the store and the destination are opened).
 */
#include "tests/support/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cli_case {
    const char *args;   /* after `load` */
    const char *needle; /* in stderr */
};

static const struct cli_case refused[] = {
    {"s --pipeline-name 'a b'", "--pipeline-name (pipeline_name) must be 1 to 64"},
    {"s --pipeline-name "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "--pipeline-name must be at most 64 characters (got 88)"},
    {"s --dataset-name 9lives", "--dataset-name (dataset_name) must be 1 to 63"},
    {"s --dataset-name pg_catalog", "\"pg_catalog\" is reserved"},
    {"s --dataset-name PG_Temp", "normalises to \"pg_temp\""},
    /* cut to 63 characters this used to pass as a shorter name */
    {"s --dataset-name "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "--dataset-name must be at most 63 characters"},
    {"s --table-name _dlt_loads", "--table-name (table_name) \"_dlt_loads\" normalises to"},
    {"s --table-name _Kinesis_Dead_Letters", "reserved for system tables"},
    {"s --table-name ''", "--table-name must not be empty"},
    {"s --table-name 'a;b'", "--table-name (table_name) must be 1 to 63"},
    {"'a b'", "STREAM must be 1 to 128 characters"},
    {"s --initial-at-timestamp soon", "--initial-at-timestamp"},
    {"s --initial-at-timestamp 1969-07-20T20:17:40Z", "must be after 1970-01-01T00:00:00Z"},
    {"s --initial-at-timestamp 1970-01-01T00:00:00Z", "must be after 1970-01-01T00:00:00Z"},
    {"s --max-number-of-messages 0", "--max-number-of-messages must be an integer from 1 to"},
    {"s --max-number-of-messages 9007199254740991", "from 1 to 999999999999999"},
    {"s --milliseconds-behind-latest 604800001", "from 0 to 604800000"},
    {"s --chunk-size 10001", "--chunk-size must be an integer from 1 to 10000"},
    {"s --write-disposition upsert", "append, merge or replace"},
};

static void bad_parameters_exit_2_naming_the_option(void **state)
{
    (void)state;

    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *out = NULL;
        /* no endpoint and no credentials: anything past the check would fail otherwise */
        int rc = kl_test_run(&out,
                             "env -u AWS_ENDPOINT_URL_KINESIS -u DATABASE_URL -u REDIS_URL "
                             "KL_SQLITE_PATH=/nonexistent/dir/x.db '%s' load %s 2>&1",
                             KL_BINARY, refused[i].args);
        if (rc != 2)
            fail_msg("load %s: exit %d, expected 2: %s", refused[i].args, rc, out);
        if (strstr(out, refused[i].needle) == NULL)
            fail_msg("load %s: '%s' lacks '%s'", refused[i].args, out, refused[i].needle);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_parameters_exit_2_naming_the_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
