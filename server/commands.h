/*
 * The binary's commands. main.c parses the command name and hands the rest
 * of the arguments over; each command returns the process exit status
 * (0 success, 1 failure, 2 usage error).
 */
#ifndef KL_SERVER_COMMANDS_H
#define KL_SERVER_COMMANDS_H

#include <stdio.h>

int kl_cmd_read(int argc, char **argv);
void kl_cmd_read_usage(FILE *out);
int kl_cmd_load(int argc, char **argv);
void kl_cmd_load_usage(FILE *out);

#endif
