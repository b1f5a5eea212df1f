/*
 * kinesis-loader: the process entry point. Picks the command and hands over
 * the remaining arguments. The concrete backends are built in backends.c.
 */
#include "server/commands.h"
#include "server/config.h"
#include "server/engine_service.h"
#include "server/serve.h"

#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Blocks of 1 MiB and more (GetRecords pages, the rows of a large message)
 * get their own mapping and go back to the system when freed. glibc's
 * default threshold rises to the size of the largest block freed, after
 * which such blocks come from each thread's heap and stay there: measured
 * with 4 workers, a load of 10 MiB records peaked at 70 MiB of RSS that
 * way and at 43 MiB with the threshold fixed (KL_MEMORY_MAX 40 MiB). */
static void fix_mmap_threshold(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kinesis-loader COMMAND [options]\n"
            "\n"
            "Loads Amazon Kinesis Data Streams into PostgreSQL.\n"
            "\n"
            "Commands:\n"
            "  serve         run the service: REST API and load workers (the default)\n"
            "  read STREAM   print a stream's messages as JSON lines (like kcat for Kafka)\n"
            "  load STREAM   run one load job in the foreground and print its job document\n"
            "\n"
            "  --help        this text; `kinesis-loader COMMAND --help` for a command\n"
            "  --version     the version\n"
            "\n"
            "AWS settings come from the standard variables: AWS_REGION, AWS_ACCESS_KEY_ID,\n"
            "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_ENDPOINT_URL_KINESIS,\n"
            "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, container credentials, EC2 IMDSv2.\n"
            "\n");
    kl_config_help(out);
}

int main(int argc, char **argv)
{
    fix_mmap_threshold();
    /* `serve` is the default command; its engine is built from the
     * configuration in server/engine_service.c */
    if (argc < 2)
        return kl_serve_command(argc, argv, kl_engine_serve_hooks());
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("kinesis-loader %s\n", KL_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "read") == 0)
        return kl_cmd_read(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return kl_serve_command(argc - 1, argv + 1, kl_engine_serve_hooks());
    if (strcmp(argv[1], "load") == 0)
        return kl_cmd_load(argc - 1, argv + 1);
    fprintf(stderr, "kinesis-loader: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
