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
