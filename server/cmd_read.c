/*
 * `kinesis-loader read`: prints a stream's messages as JSON lines with dlt's
 * envelope, and the final per-shard state (to stderr or a file that a later
 * read takes back with --state-in), so incremental reading works from a
 * shell. A tool for people; loads go through jobs, not through here.
 */
#include "server/commands.h"
#include "server/cli.h"
#include "core/kinesis/conn.h"
#include "core/kinesis/reader.h"
#include "core/normalize/json.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AFTER 256
#define LINE_MAX_BYTES ((size_t)64 << 20)
#define STATE_FILE_MAX ((size_t)16 << 20)

struct read_args {
    const char *stream;
    const char *from;
    const char *shard;
    const char *state_in;
    const char *state_out;
    const char *pacing;
    int64_t max;
    int chunk_size;
    int concurrency;
    int64_t millis_behind;
    bool raw;
    struct kl_shard_position after[MAX_AFTER];
    size_t n_after;
};

static atomic_bool interrupted;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

void kl_cmd_read_usage(FILE *out)
{
    fprintf(
        out,
        "usage: kinesis-loader read STREAM [options]\n"
        "\n"
        "Prints one JSON line per message: the `_kinesis` envelope (shard_id, seq_no, ts,\n"
        "partition, stream_name, and sub_seq_no for KPL user records), `_kinesis_msg_id`, and\n"
        "the fields of the message's JSON object, as dlt's kinesis source yields them. Data\n"
        "that is not a JSON object is printed under `_kinesis_dead_letter` (error, base64\n"
        "data). The final per-shard state goes to stderr, or to --state-out.\n"
        "\n"
        "  --from POS           where shards without a position start: trim-horizon (default),\n"
        "                       latest, epoch seconds, or ISO-8601 (2024-05-01T12:00:00Z)\n"
        "  --after SHARD=SEQ    continue a shard after this sequence number (repeatable)\n"
        "  --state-in FILE      continue from a state file written by --state-out\n"
        "  --state-out FILE     write the final state to FILE instead of stderr\n"
        "  --max N              stop after about N messages (may overshoot by one chunk)\n"
        "  --shard ID           read only this shard\n"
        "  --raw                do not parse Data: print it base64-encoded as `data`\n"
        "  --chunk-size N       records per GetRecords call, 1..10000 (default 1000)\n"
        "  --concurrency N      shards read in parallel, 1..64 (default 4)\n"
        "  --milliseconds-behind-latest MS\n"
        "                       a shard is done once it is less than MS behind (default 0:\n"
        "                       read to the tip)\n"
        "  --pacing MODE        on: keep to Kinesis' 5 calls/s and 2 MiB/s per shard; off;\n"
        "                       auto (default): on for AWS endpoints, off for others\n"
        "\n"
        "Exit status: 0 done, 1 a read failed, 2 bad usage. KL_LOG_LEVEL sets the log level\n"
        "(default warn).\n");
}

static int add_position(struct kl_shard_position *list, size_t *n, const char *shard,
                        const char *seq, int64_t sub)
{
    struct kl_shard_position *p = NULL;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i].shard_id, shard) == 0)
            p = &list[i];
    if (p == NULL) {
        if (*n >= MAX_AFTER)
            return -1;
        p = &list[(*n)++];
    }
    if (strlen(shard) >= sizeof p->shard_id || strlen(seq) >= sizeof p->sequence)
        return -1;
    for (const char *c = seq; *c; c++)
        if (*c < '0' || *c > '9')
            return -1;
    snprintf(p->shard_id, sizeof p->shard_id, "%s", shard);
    snprintf(p->sequence, sizeof p->sequence, "%s", seq);
    p->sub_sequence = sub;
    return 0;
}

static int parse_args(int argc, char **argv, struct read_args *a)
{
    int64_t v;

    memset(a, 0, sizeof *a);
    a->from = "trim-horizon";
    a->pacing = "auto";
    a->max = -1;
    a->chunk_size = 1000;
    a->concurrency = 4;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            kl_cmd_read_usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--raw") == 0) {
            a->raw = true;
            takes = false;
        } else if (arg[0] != '-') {
            if (a->stream != NULL) {
                fprintf(stderr, "kinesis-loader read: one stream only ('%s' and '%s')\n", a->stream,
                        arg);
                return -1;
            }
            a->stream = arg;
            takes = false;
        } else if (val == NULL) {
            fprintf(stderr, "kinesis-loader read: %s needs a value\n", arg);
            return -1;
        } else if (strcmp(arg, "--from") == 0) {
            a->from = val;
        } else if (strcmp(arg, "--shard") == 0) {
            a->shard = val;
        } else if (strcmp(arg, "--state-in") == 0) {
            a->state_in = val;
        } else if (strcmp(arg, "--state-out") == 0) {
            a->state_out = val;
        } else if (strcmp(arg, "--pacing") == 0) {
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0 && strcmp(val, "auto") != 0) {
                fprintf(stderr, "kinesis-loader read: --pacing is on, off or auto, not '%s'\n",
                        val);
                return -1;
            }
            a->pacing = val;
        } else if (strcmp(arg, "--after") == 0) {
            char shard[KL_SHARD_ID_MAX];
            const char *eq = strchr(val, '=');
            if (eq == NULL || eq == val || (size_t)(eq - val) >= sizeof shard) {
                fprintf(stderr, "kinesis-loader read: --after takes SHARD=SEQUENCE, not '%s'\n",
                        val);
                return -1;
            }
            memcpy(shard, val, (size_t)(eq - val));
            shard[eq - val] = '\0';
            if (add_position(a->after, &a->n_after, shard, eq + 1, -1) != 0) {
                fprintf(stderr,
                        "kinesis-loader read: bad --after '%s' (sequence numbers are "
                        "digits)\n",
                        val);
                return -1;
            }
        } else if (strcmp(arg, "--max") == 0) {
            if (kl_cli_parse_int("read", arg, val, 1, INT64_MAX, &a->max) != 0)
                return -1;
        } else if (strcmp(arg, "--chunk-size") == 0) {
            if (kl_cli_parse_int("read", arg, val, 1, 10000, &v) != 0)
                return -1;
            a->chunk_size = (int)v;
        } else if (strcmp(arg, "--concurrency") == 0) {
            if (kl_cli_parse_int("read", arg, val, 1, 64, &v) != 0)
                return -1;
            a->concurrency = (int)v;
        } else if (strcmp(arg, "--milliseconds-behind-latest") == 0) {
            if (kl_cli_parse_int("read", arg, val, 0, INT64_MAX, &a->millis_behind) != 0)
                return -1;
        } else {
            fprintf(stderr, "kinesis-loader read: unknown option %s\n", arg);
            return -1;
        }
        if (takes)
            i++;
    }
    if (a->stream == NULL) {
        fprintf(stderr, "kinesis-loader read: which stream? (kinesis-loader read STREAM)\n");
        return -1;
    }
    if (!kl_stream_name_valid(a->stream)) {
        fprintf(stderr,
                "kinesis-loader read: '%s' is not a valid stream name (1..128 of "
                "a-z A-Z 0-9 _ . -)\n",
                a->stream);
        return -1;
    }
    return 0;
}

/* Loads a state file: positions (without overriding --after) and the run time. */
static int load_state(const char *path, const char *stream, struct read_args *a,
                      int64_t *last_run_ms)
{
    struct kl_buf text;
    char chunk[8192];
    cJSON *doc = NULL;
    const cJSON *shards, *sh, *run;
    size_t n;
    FILE *f = fopen(path, "rb");
    int rc = -1;

    kl_buf_init(&text, STATE_FILE_MAX);
    if (f == NULL) {
        fprintf(stderr, "kinesis-loader read: cannot open state file %s: %s\n", path,
                strerror(errno));
        goto cleanup;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (kl_buf_append(&text, chunk, n, NULL) != KL_OK) {
            fprintf(stderr, "kinesis-loader read: state file %s is too large\n", path);
            goto cleanup;
        }
    }
    doc = cJSON_ParseWithLength(text.data ? text.data : "", text.len);
    if (!cJSON_IsObject(doc)) {
        fprintf(stderr, "kinesis-loader read: state file %s is not a JSON object\n", path);
        goto cleanup;
    }
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "stream")) &&
        strcmp(cJSON_GetObjectItemCaseSensitive(doc, "stream")->valuestring, stream) != 0) {
        fprintf(stderr, "kinesis-loader read: state file %s belongs to stream '%s', not '%s'\n",
                path, cJSON_GetObjectItemCaseSensitive(doc, "stream")->valuestring, stream);
        goto cleanup;
    }
    run = cJSON_GetObjectItemCaseSensitive(doc, "last_run");
    if (cJSON_IsString(run) && kl_parse_timestamp(run->valuestring, last_run_ms, NULL) != KL_OK) {
        fprintf(stderr, "kinesis-loader read: state file %s: bad last_run '%s'\n", path,
                run->valuestring);
        goto cleanup;
    }
    shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
    cJSON_ArrayForEach(sh, shards)
    {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(sh, "sequence");
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(sh, "sub_sequence");
        bool given = false;
        if (!cJSON_IsString(seq) || seq->valuestring[0] == '\0')
            continue;
        for (size_t i = 0; i < a->n_after; i++)
            given = given || strcmp(a->after[i].shard_id, sh->string) == 0;
        if (given)
            continue; /* --after wins over the file */
        if (add_position(a->after, &a->n_after, sh->string, seq->valuestring,
                         cJSON_IsNumber(sub) ? (int64_t)sub->valuedouble : -1) != 0) {
            fprintf(stderr, "kinesis-loader read: state file %s: bad position for shard %s\n", path,
                    sh->string);
            goto cleanup;
        }
    }
    rc = 0;

cleanup:
    if (f != NULL)
        fclose(f);
    cJSON_Delete(doc);
    kl_buf_free(&text);
    return rc;
}

static int write_state(const struct read_args *a, struct kl_reader *r, int64_t run_ms,
                       struct kl_err *err)
{
    struct kl_reader_shard_info *info = NULL;
    cJSON *doc = cJSON_CreateObject(), *shards;
    char ts[32], *text = NULL;
    size_t n = 0;
    FILE *f = NULL;
    int rc;

    rc = kl_reader_shards(r, &info, &n, err);
    if (rc != KL_OK)
        goto cleanup;
    kl_format_timestamp(run_ms, ts);
    shards = doc ? cJSON_AddObjectToObject(doc, "shards") : NULL;
    if (shards == NULL || cJSON_AddStringToObject(doc, "stream", a->stream) == NULL ||
        cJSON_AddStringToObject(doc, "last_run", ts) == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory writing the state");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_AddObjectToObject(shards, info[i].shard_id);
        if (s == NULL ||
            cJSON_AddStringToObject(s, "sequence", info[i].position.sequence) == NULL ||
            cJSON_AddNumberToObject(s, "sub_sequence", (double)info[i].position.sub_sequence) ==
                NULL ||
            cJSON_AddNumberToObject(s, "messages", (double)info[i].messages) == NULL ||
            cJSON_AddNumberToObject(s, "millis_behind_latest", (double)info[i].millis_behind) ==
                NULL ||
            cJSON_AddBoolToObject(s, "drained", info[i].drained) == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory writing the state");
            goto cleanup;
        }
        if (info[i].has_gap) {
            cJSON *g = cJSON_AddObjectToObject(s, "gap");
            if (g == NULL ||
                cJSON_AddStringToObject(g, "from", info[i].gap.from_sequence) == NULL ||
                cJSON_AddStringToObject(g, "to", info[i].gap.to_sequence) == NULL ||
                cJSON_AddStringToObject(g, "reason", info[i].gap.reason) == NULL) {
                rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory writing the state");
                goto cleanup;
            }
        }
    }
    text = cJSON_PrintUnformatted(doc);
    if (text == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory writing the state");
        goto cleanup;
    }
    if (a->state_out != NULL) {
        /* write beside and rename, so a crash never leaves half a state file */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", a->state_out);
        f = fopen(tmp, "wb");
        if (f == NULL || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
            f = NULL;
            rc = kl_err_set(err, KL_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
            goto cleanup;
        }
        f = NULL;
        if (rename(tmp, a->state_out) != 0) {
            rc = kl_err_set(err, KL_ERR_IO, "cannot rename %s to %s: %s", tmp, a->state_out,
                            strerror(errno));
            goto cleanup;
        }
    } else {
        fprintf(stderr, "%s\n", text);
    }
    rc = KL_OK;

cleanup:
    if (f != NULL)
        fclose(f);
    free(text);
    free(info);
    cJSON_Delete(doc);
    return rc;
}

static int put_base64(struct kl_buf *line, const unsigned char *data, size_t len)
{
    int rc = kl_buf_reserve(line, kl_base64_encoded_size(len) + 2, NULL);
    if (rc != KL_OK)
        return rc;
    line->data[line->len++] = '"';
    line->len += kl_base64_encode(data, len, line->data + line->len, true);
    line->data[line->len++] = '"';
    line->data[line->len] = '\0';
    return KL_OK;
}

/* One message as a JSON line (see the usage text). */
static int format_message(const struct kl_message *m, bool raw, struct kl_json_doc *doc,
                          struct kl_buf *line)
{
    const struct kl_json *obj = NULL, *over_env = NULL, *over_id = NULL;
    char reason[160], ts[32];
    bool parsed = false;
    int rc;

    kl_buf_reset(line);
    if (!raw)
        parsed =
            kl_json_parse_object(doc, m->data, m->data_len, &obj, reason, sizeof reason) == KL_OK;
    if (parsed) {
        /* dlt merges the payload over the envelope: its keys win, in place */
        over_env = kl_json_get(obj, "_kinesis", 8);
        over_id = kl_json_get(obj, "_kinesis_msg_id", 15);
    }
    rc = kl_buf_append_str(line, "{\"_kinesis\":", NULL);
    if (rc == KL_OK && over_env != NULL) {
        rc = kl_json_write(over_env, line, NULL);
    } else if (rc == KL_OK) {
        kl_format_timestamp(m->arrival_ms, ts);
        rc = kl_buf_append_str(line, "{\"shard_id\":", NULL);
        if (rc == KL_OK)
            rc = kl_json_write_string(m->shard_id, strlen(m->shard_id), line, NULL);
        if (rc == KL_OK)
            rc = kl_buf_printf(line, NULL,
                               ",\"seq_no\":\"%s\",\"ts\":\"%s\",\"partition\":", m->sequence, ts);
        if (rc == KL_OK)
            rc = kl_json_write_string(m->partition_key, strlen(m->partition_key), line, NULL);
        if (rc == KL_OK)
            rc = kl_buf_append_str(line, ",\"stream_name\":", NULL);
        if (rc == KL_OK)
            rc = kl_json_write_string(m->stream_name, strlen(m->stream_name), line, NULL);
        if (rc == KL_OK && m->sub_sequence >= 0)
            rc = kl_buf_printf(line, NULL, ",\"sub_seq_no\":%lld", (long long)m->sub_sequence);
        if (rc == KL_OK)
            rc = kl_buf_append_str(line, "}", NULL);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(line, ",\"_kinesis_msg_id\":", NULL);
    if (rc == KL_OK)
        rc = over_id != NULL ? kl_json_write(over_id, line, NULL)
                             : kl_buf_printf(line, NULL, "\"%s\"", m->msg_id);
    if (rc == KL_OK && parsed) {
        for (uint32_t i = 0; rc == KL_OK && i < obj->len; i++) {
            const struct kl_json_member *mem = &obj->u.members[i];
            if (&mem->value == over_env || &mem->value == over_id)
                continue;
            rc = kl_buf_append_str(line, ",", NULL);
            if (rc == KL_OK)
                rc = kl_json_write_string(mem->key, mem->key_len, line, NULL);
            if (rc == KL_OK)
                rc = kl_buf_append_str(line, ":", NULL);
            if (rc == KL_OK)
                rc = kl_json_write(&mem->value, line, NULL);
        }
    } else if (rc == KL_OK && raw) {
        rc = kl_buf_append_str(line, ",\"data\":", NULL);
        if (rc == KL_OK)
            rc = put_base64(line, m->data, m->data_len);
    } else if (rc == KL_OK) {
        rc = kl_buf_append_str(line, ",\"_kinesis_dead_letter\":{\"error\":", NULL);
        if (rc == KL_OK)
            rc = kl_json_write_string(reason, strlen(reason), line, NULL);
        if (rc == KL_OK)
            rc = kl_buf_append_str(line, ",\"data\":", NULL);
        if (rc == KL_OK)
            rc = put_base64(line, m->data, m->data_len);
        if (rc == KL_OK)
            rc = kl_buf_append_str(line, "}", NULL);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(line, "}\n", NULL);
    return rc;
}

int kl_cmd_read(int argc, char **argv)
{
    static struct read_args a;
    struct kl_kinesis_conn conn;
    struct kl_kinesis_conn_options co;
    struct kl_reader_options ro;
    struct kl_reader *reader = NULL;
    struct kl_json_doc doc;
    struct kl_buf line;
    struct kl_chunk *chunk;
    struct kl_err err;
    struct sigaction sa;
    int64_t last_run_ms = -1, started_ms;
    bool conn_open = false;
    int status = 1;
    const char *level = getenv("KL_LOG_LEVEL");

    kl_json_doc_init(&doc);
    kl_buf_init(&line, LINE_MAX_BYTES);
    if (kl_log_set_level_name(level ? level : "warn") != 0) {
        fprintf(stderr,
                "kinesis-loader read: KL_LOG_LEVEL is debug, info, warn or error, not "
                "'%s'\n",
                level);
        status = 2;
        goto cleanup;
    }
    if (parse_args(argc, argv, &a) != 0) {
        fprintf(stderr, "(kinesis-loader read --help lists the options)\n");
        status = 2;
        goto cleanup;
    }
    memset(&ro, 0, sizeof ro);
    if (kl_parse_initial_position(a.from, &ro.initial, &err) != KL_OK) {
        fprintf(stderr, "kinesis-loader read: --from: %s\n", err.msg);
        status = 2;
        goto cleanup;
    }
    if (a.state_in != NULL && load_state(a.state_in, a.stream, &a, &last_run_ms) != 0) {
        status = 2;
        goto cleanup;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* a closed pipe (`| head`) is a normal stop: the write fails with EPIPE */
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        fprintf(stderr, "kinesis-loader read: cannot install signal handlers\n");
        goto cleanup;
    }
    memset(&co, 0, sizeof co);
    co.cancel = &interrupted;
    if (kl_kinesis_conn_init(&conn, &co, &err) != KL_OK) {
        fprintf(stderr, "kinesis-loader read: %s\n", err.msg);
        goto cleanup;
    }
    conn_open = true;

    started_ms = kl_clock_wall_ms(kl_clock_system());
    ro.client = conn.client;
    ro.stream = a.stream;
    ro.last_run_ms = last_run_ms;
    ro.positions = a.after;
    ro.n_positions = a.n_after;
    ro.only_shard = a.shard;
    ro.chunk_size = a.chunk_size;
    ro.max_messages = a.max;
    ro.millis_behind_latest = a.millis_behind;
    ro.stop_at_arrival_ms = started_ms;
    ro.concurrency = a.concurrency;
    /* the flag was checked: on, off or auto */
    kl_kinesis_pacing(conn.client, a.pacing, &ro.min_call_interval_ms, &ro.max_bytes_per_s, NULL);
    ro.cancel = &interrupted;
    reader = kl_reader_create(&ro, &err);
    if (reader == NULL) {
        fprintf(stderr, "kinesis-loader read: %s: %s\n", a.stream, err.msg);
        goto cleanup;
    }
    for (;;) {
        int rc = kl_reader_next(reader, &chunk, &err);
        if (rc != KL_OK) {
            fprintf(stderr, "kinesis-loader read: %s: %s\n", a.stream, err.msg);
            goto finish;
        }
        if (chunk == NULL)
            break;
        for (size_t i = 0; i < chunk->n_messages; i++) {
            if (format_message(&chunk->messages[i], a.raw, &doc, &line) != KL_OK) {
                fprintf(stderr, "kinesis-loader read: cannot format message %s of shard %s\n",
                        chunk->messages[i].sequence, chunk->shard_id);
                goto finish;
            }
            if (fwrite(line.data, 1, line.len, stdout) != line.len)
                break;
        }
        /* what is flushed is delivered: only then does the position move */
        if (ferror(stdout) || fflush(stdout) != 0) {
            if (errno == EPIPE) {
                status = 0; /* the reader of our output has had enough */
                goto finish;
            }
            fprintf(stderr, "kinesis-loader read: writing to stdout failed: %s\n", strerror(errno));
            goto finish;
        }
        kl_reader_commit(reader, chunk);
    }
    status = 0;

finish:
    /* dlt: the next run starts shards without a position at this run's start minus 1 s */
    if (write_state(&a, reader, started_ms - 1000, &err) != KL_OK) {
        fprintf(stderr, "kinesis-loader read: %s\n", err.msg);
        status = 1;
    }
cleanup:
    kl_reader_destroy(reader);
    if (conn_open)
        kl_kinesis_conn_free(&conn);
    kl_json_doc_free(&doc);
    kl_buf_free(&line);
    return status;
}
