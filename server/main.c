/*
 * kinesis-loader: the process entry point. Parses the command line and hands
 * over to the command; it is the only place that picks concrete backends.
 */
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: kinesis-loader [--help] [--version]\n"
                 "\n"
                 "Loads Amazon Kinesis Data Streams into PostgreSQL.\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("kinesis-loader %s\n", KL_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
