/*
 * Small helpers shared by the commands' flag parsing. Messages go to stderr
 * and name the command and the flag.
 */
#ifndef KL_SERVER_CLI_H
#define KL_SERVER_CLI_H

#include <stdint.h>

/* Parses a whole decimal integer in [lo, hi]; returns 0, or -1 after
 * printing "kinesis-loader CMD: FLAG must be an integer from LO to HI". */
int kl_cli_parse_int(const char *cmd, const char *flag, const char *text, int64_t lo, int64_t hi,
                     int64_t *out);

#endif
