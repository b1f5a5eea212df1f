/*
 * A parser for the INI dialect of the AWS shared config and credentials
 * files (the rules every AWS SDK shares: '#'/';' comments, trimmed names and
 * values, continuation lines, sub-properties). It reports what it reads and
 * keeps nothing; what a section means (profiles) is aws_config.c's business.
 */
#ifndef KL_AWS_INI_H
#define KL_AWS_INI_H

#include <stddef.h>

struct kl_err;

#define KL_INI_MAX_NAME 256                 /* section headers and property names */
#define KL_INI_MAX_VALUE ((size_t)64 << 10) /* a value with its continuation lines */

struct kl_ini_entry {
    const char *section; /* text between the brackets, trimmed, comment removed */
    const char *key;     /* NULL for the section header itself; case as written */
    const char *value;   /* trimmed; continuation lines joined with '\n'; NULL for headers */
    unsigned line;       /* 1-based line of the header or property */
};

/* Calls `on_entry` for every section header and then for every property of
 * that section once its continuation lines are read. The strings live only
 * during the call; the parser wipes its copy of each value afterwards, so
 * secrets are not left behind. `on_entry` returns KL_OK to go on; any other
 * code stops the parse and is returned. Syntax errors are KL_ERR_INVALID with
 * "<origin>:<line>: ..." in the message. */
int kl_ini_parse(const char *text, size_t len, const char *origin,
                 int (*on_entry)(void *ud, const struct kl_ini_entry *e, struct kl_err *err),
                 void *ud, struct kl_err *err);

#endif
