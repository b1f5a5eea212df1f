/*
 * Flag helpers for the commands (see cli.h).
 */
#include "server/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kl_cli_parse_int(const char *cmd, const char *flag, const char *text, int64_t lo, int64_t hi,
                     int64_t *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "kinesis-loader %s: %s must be an integer from %lld to %lld, not '%s'\n",
                cmd, flag, (long long)lo, (long long)hi, text);
        return -1;
    }
    *out = v;
    return 0;
}
