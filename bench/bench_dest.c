/*
 * Benchmark: Kinesis messages of the usual corpus shape (a nested object and
 * a small list) normalised and loaded into Postgres through the normaliser and
 * the Postgres destination, chunk by chunk with checkpoints, exactly as a job
 * writes them; then the identical rows (exported from the first load) loaded
 * with plain COPY from files into a copy of the same tables. Prints rows/s,
 * messages/s, peak RSS (and RSS as the load goes, to show it stays flat) and
 * the ratio to plain COPY. Goals: ratio >= 0.7, peak RSS <= 64 MiB.
 *
 * Environment: KL_TEST_PG_URL or DATABASE_URL (the server), BENCH_MESSAGES
 * (default 1000000), BENCH_CHUNK (messages per chunk, default 1000, the
 * design's chunk_size), BENCH_DISPOSITION (append|merge, default append),
 * BENCH_SHARDS (shards, each read and written by its own worker thread and
 * connection as the service does; default 4), BENCH_KEEP=1 (keep the
 * schemas and files).
 */
#include "core/dest/dest.h"
#include "core/dest/pg.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SHARDS 16

static int SHARDS = 4; /* BENCH_SHARDS: shards, and so workers */
#define STREAM "bench-stream"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM (peak) or VmRSS (current) of this process in KiB. */
static long proc_kib(const char *field)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field) + 1, NULL, 10);
    fclose(f);
    return v;
}

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? strtol(v, NULL, 10) : def;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_dest: %s: %s\n", what, msg);
    exit(1);
}

/* Message i: a nested object and a small list. */
static size_t make_message(long i, char *buf, size_t cap)
{
    static const char *const events[] = {"click", "view", "purchase", "signup"};
    int n = snprintf(buf, cap,
                     "{\"event_id\":%ld,\"event\":\"%s\",\"user\":{\"id\":\"u-%ld\",\"name\":"
                     "\"User %ld\",\"address\":{\"city\":\"City %ld\",\"zip\":\"%05ld\"}},"
                     "\"amount\":%ld.%02ld,\"currency\":\"EUR\",\"created_at\":"
                     "\"2024-05-01T10:%02ld:%02ld.%03ldZ\",\"tags\":[\"t%ld\",\"t%ld\",\"t%ld\"]}",
                     i, events[i % 4], i % 50000, i % 50000, i % 997, i % 100000, i % 1000, i % 100,
                     (i / 60) % 60, i % 60, i % 1000, i % 7, i % 11, i % 13);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

struct phase {
    double seconds;
    double write_seconds; /* inside kl_dest_write_chunk */
    unsigned long long rows;
    unsigned long long messages;
};

/* One worker as the service runs it: one shard, its own normaliser and
 * connection, chunk after chunk, each with the shard's checkpoint. */
struct worker {
    const char *url;
    const char *ds;
    int shard;
    long messages; /* of this shard */
    long chunk;
    enum kl_write_disposition wd;
    atomic_long *done;    /* messages written, all workers */
    atomic_int *finished; /* workers that returned */
    unsigned long long rows;
    unsigned long long n_messages;
    double write_seconds;
    char error[256];
};

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct kl_err err = {0};
    struct kl_normalizer_options o;
    struct kl_normalizer *n = NULL;
    struct kl_dest *d = NULL;
    struct kl_buf json;
    int64_t stored_version = -1;
    char data[1024], shard[32], seq[KL_SEQ_MAX];

    kl_buf_init(&json, (size_t)16 << 20);
    memset(&o, 0, sizeof o);
    o.stream_name = STREAM;
    o.parse_json = true;
    o.load_id = "1714557600.123456";
    o.write_disposition = wk->wd;
    n = kl_normalizer_create(&o, kl_schema_create("kinesis"), &err);
    if (n == NULL)
        goto fail;
    d = kl_dest_pg_create(wk->url, NULL, &err);
    if (d == NULL)
        goto fail;
    snprintf(shard, sizeof shard, "shardId-%012d", wk->shard);
    for (long k = 0; k < wk->messages;) {
        long end = k + wk->chunk < wk->messages ? k + wk->chunk : wk->messages;
        struct kl_row_batch b;
        struct kl_checkpoint cp;
        struct kl_chunk_write w;
        struct kl_chunk_result res;
        double tw;

        for (; k < end; k++) {
            long i = k * SHARDS + wk->shard; /* the message's number in the stream */
            struct kl_message m;
            memset(&m, 0, sizeof m);
            /* 56 digits, as Kinesis spells them */
            snprintf(seq, sizeof seq, "495434630765480075771050927030%026ld", i);
            m.stream_name = STREAM;
            m.shard_id = shard;
            m.sequence = seq;
            m.sub_sequence = -1;
            m.partition_key = "pk";
            m.arrival_ms = 1714557600000LL + i;
            m.data = (const unsigned char *)data;
            m.data_len = make_message(i, data, sizeof data);
            if (kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, &err) != KL_OK ||
                kl_normalizer_add(n, &m, &err) != KL_OK)
                goto fail;
        }
        if (kl_normalizer_close(n, &b, &err) != KL_OK)
            goto fail;
        memset(&w, 0, sizeof w);
        if (b.schema->version != stored_version) {
            kl_buf_reset(&json);
            if (kl_schema_to_json(b.schema, &json, &err) != KL_OK)
                goto fail;
            w.schema_json = json.data;
            w.schema_hash = b.schema->version_hash;
        }
        memset(&cp, 0, sizeof cp);
        snprintf(cp.position.shard_id, sizeof cp.position.shard_id, "%s", shard);
        memcpy(cp.position.sequence, seq, sizeof cp.position.sequence);
        cp.position.sub_sequence = -1;
        cp.fencing_token = 1;
        w.load_id = o.load_id;
        w.pipeline_name = "bench_pipeline";
        w.stream_name = STREAM;
        w.disposition = wk->wd;
        w.batch = &b;
        w.checkpoints = &cp;
        w.n_checkpoints = 1;
        memset(&res, 0, sizeof res);
        tw = now_s();
        if (kl_dest_write_chunk(d, wk->ds, &w, &res, &err) != KL_OK)
            goto fail;
        wk->write_seconds += now_s() - tw;
        stored_version = b.schema->version;
        wk->rows += res.rows;
        wk->n_messages += b.n_messages;
        atomic_fetch_add(wk->done, (long)b.n_messages);
        kl_normalizer_reset(n, true);
    }
    goto done;
fail:
    snprintf(wk->error, sizeof wk->error, "%s", err.msg[0] != '\0' ? err.msg : "out of memory");
done:
    kl_buf_free(&json);
    kl_dest_destroy(d);
    kl_normalizer_destroy(n);
    atomic_fetch_add(wk->finished, 1);
    return NULL;
}

/* The loader path: a worker per shard, like the service's worker pool. */
static void run_loader(const char *url, const char *ds, long messages, long chunk,
                       enum kl_write_disposition wd, struct phase *out)
{
    struct kl_err err = {0};
    struct worker wk[MAX_SHARDS];
    pthread_t th[MAX_SHARDS];
    atomic_long done = 0;
    atomic_int finished = 0;
    struct kl_dest *d = kl_dest_pg_create(url, NULL, &err);
    long next_report = messages / 4;
    double t0;

    if (d == NULL)
        die("connect", err.msg);
    if (kl_dest_prepare(d, ds, &err) != KL_OK)
        die("prepare", err.msg);
    memset(out, 0, sizeof *out);
    t0 = now_s();
    for (int s = 0; s < SHARDS; s++) {
        memset(&wk[s], 0, sizeof wk[s]);
        wk[s].url = url;
        wk[s].ds = ds;
        wk[s].shard = s;
        wk[s].messages = messages / SHARDS + (s < messages % SHARDS ? 1 : 0);
        wk[s].chunk = chunk;
        wk[s].wd = wd;
        wk[s].done = &done;
        wk[s].finished = &finished;
        if (pthread_create(&th[s], NULL, worker_main, &wk[s]) != 0)
            die("pthread_create", strerror(errno));
    }
    while (atomic_load(&finished) < SHARDS) {
        long now_done = atomic_load(&done);
        if (next_report > 0 && now_done >= next_report) {
            printf("  %9ld messages  %8.1f s  rss %6.1f MiB  peak %6.1f MiB\n", now_done,
                   now_s() - t0, (double)proc_kib("VmRSS:") / 1024,
                   (double)proc_kib("VmHWM:") / 1024);
            fflush(stdout);
            next_report += messages / 4;
            continue;
        }
        {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int s = 0; s < SHARDS; s++)
        if (pthread_join(th[s], NULL) != 0)
            die("pthread_join", strerror(errno));
    if (next_report <= messages)
        printf("  %9ld messages  %8.1f s  rss %6.1f MiB  peak %6.1f MiB\n", atomic_load(&done),
               now_s() - t0, (double)proc_kib("VmRSS:") / 1024, (double)proc_kib("VmHWM:") / 1024);
    for (int s = 0; s < SHARDS; s++) {
        if (wk[s].error[0] != '\0')
            die("worker", wk[s].error);
        out->rows += wk[s].rows;
        out->messages += wk[s].n_messages;
        out->write_seconds += wk[s].write_seconds;
    }
    {
        struct kl_load_complete c;
        memset(&c, 0, sizeof c);
        c.load_id = "1714557600.123456";
        c.schema_name = "kinesis";
        c.pipeline_name = "bench_pipeline";
        c.stream_name = STREAM;
        c.disposition = wd;
        c.next_run_ms = 1714557599000LL;
        if (kl_dest_complete_load(d, ds, &c, &err) != KL_OK)
            die("complete load", err.msg);
    }
    out->seconds = now_s() - t0;
    kl_dest_destroy(d);
}

static PGresult *must(PGconn *c, PGresult *res, ExecStatusType want, const char *what)
{
    if (res == NULL || PQresultStatus(res) != want)
        die(what, PQerrorMessage(c));
    return res;
}

/* The data tables of a dataset (not ours or dlt's), by name. */
static int list_tables(PGconn *c, const char *ds, char names[][64], int max)
{
    const char *vals[1] = {ds};
    PGresult *res = must(c,
                         PQexecParams(c,
                                      "SELECT tablename FROM pg_tables WHERE schemaname = $1"
                                      " AND tablename NOT LIKE '\\_dlt\\_%' AND tablename NOT LIKE"
                                      " '\\_kinesis\\_%' ORDER BY tablename",
                                      1, NULL, vals, NULL, NULL, 0),
                         PGRES_TUPLES_OK, "list tables");
    int n = PQntuples(res) < max ? PQntuples(res) : max;
    for (int i = 0; i < n; i++)
        snprintf(names[i], 64, "%s", PQgetvalue(res, i, 0));
    PQclear(res);
    return n;
}

/* Exports the loaded rows to COPY text files (not timed). */
static void export_tables(PGconn *c, const char *ds, char names[][64], int n, const char *dir)
{
    for (int t = 0; t < n; t++) {
        char sql[4096], path[4096];
        char *buf;
        int len;
        FILE *f;
        snprintf(path, sizeof path, "%s/%s.copy", dir, names[t]);
        f = fopen(path, "w");
        if (f == NULL)
            die("open", strerror(errno));
        snprintf(sql, sizeof sql, "COPY \"%s\".\"%s\" TO STDOUT", ds, names[t]);
        PQclear(must(c, PQexec(c, sql), PGRES_COPY_OUT, "COPY TO"));
        while ((len = PQgetCopyData(c, &buf, 0)) > 0) {
            if (fwrite(buf, 1, (size_t)len, f) != (size_t)len)
                die("write", strerror(errno));
            PQfreemem(buf);
        }
        if (len != -1)
            die("COPY TO", PQerrorMessage(c));
        PQclear(must(c, PQgetResult(c), PGRES_COMMAND_OK, "COPY TO end"));
        if (fclose(f) != 0)
            die("close", strerror(errno));
    }
}

/* Plain COPY: the same tables (LIKE ... INCLUDING ALL), one COPY per file
 * in one transaction, the file streamed in 1 MiB blocks as psql's \copy does. */
static void run_plain_copy(PGconn *c, const char *src, const char *dst, char names[][64], int n,
                           const char *dir, struct phase *out)
{
    char sql[8192];
    static char block[1 << 20];
    double t0;

    snprintf(sql, sizeof sql, "CREATE SCHEMA \"%s\"", dst);
    PQclear(must(c, PQexec(c, sql), PGRES_COMMAND_OK, "create schema"));
    for (int t = 0; t < n; t++) {
        snprintf(sql, sizeof sql, "CREATE TABLE \"%s\".\"%s\" (LIKE \"%s\".\"%s\" INCLUDING ALL)",
                 dst, names[t], src, names[t]);
        PQclear(must(c, PQexec(c, sql), PGRES_COMMAND_OK, "create table"));
    }
    memset(out, 0, sizeof *out);
    t0 = now_s();
    PQclear(must(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, "begin"));
    for (int t = 0; t < n; t++) {
        char path[4096];
        size_t got;
        PGresult *res;
        FILE *f;
        snprintf(path, sizeof path, "%s/%s.copy", dir, names[t]);
        f = fopen(path, "r");
        if (f == NULL)
            die("open", strerror(errno));
        snprintf(sql, sizeof sql, "COPY \"%s\".\"%s\" FROM STDIN", dst, names[t]);
        PQclear(must(c, PQexec(c, sql), PGRES_COPY_IN, "COPY FROM"));
        while ((got = fread(block, 1, sizeof block, f)) > 0)
            if (PQputCopyData(c, block, (int)got) != 1)
                die("COPY data", PQerrorMessage(c));
        fclose(f);
        if (PQputCopyEnd(c, NULL) != 1)
            die("COPY end", PQerrorMessage(c));
        res = must(c, PQgetResult(c), PGRES_COMMAND_OK, "COPY FROM end");
        out->rows += strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        while ((res = PQgetResult(c)) != NULL)
            PQclear(res);
    }
    PQclear(must(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, "commit"));
    out->seconds = now_s() - t0;
}

int main(void)
{
    const char *url = getenv("KL_TEST_PG_URL");
    long messages = env_long("BENCH_MESSAGES", 1000000);
    long chunk = env_long("BENCH_CHUNK", 1000);
    const char *disp_name = getenv("BENCH_DISPOSITION");
    enum kl_write_disposition wd = KL_WRITE_APPEND;
    bool keep = getenv("BENCH_KEEP") != NULL && strcmp(getenv("BENCH_KEEP"), "1") == 0;
    char ds[64], ds_copy[64], dir[64], names[32][64];
    struct phase ours, plain;
    long peak_kib;
    double ratio;
    PGconn *c;
    int n;

    if (url == NULL || url[0] == '\0')
        url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0')
        die("setup", "set KL_TEST_PG_URL or DATABASE_URL (make bench sources .run/services.env)");
    if (disp_name != NULL && kl_write_disposition_parse(disp_name, &wd) != 0)
        die("setup", "BENCH_DISPOSITION must be append or merge");
    SHARDS = (int)env_long("BENCH_SHARDS", 4);
    if (SHARDS < 1 || SHARDS > MAX_SHARDS)
        die("setup", "1 <= BENCH_SHARDS <= 16");
    if (messages < 1 || chunk < 1 || chunk > 10000)
        die("setup", "BENCH_MESSAGES >= 1 and 1 <= BENCH_CHUNK <= 10000");
    snprintf(ds, sizeof ds, "bench_dest_%ld", (long)getpid());
    snprintf(ds_copy, sizeof ds_copy, "bench_copy_%ld", (long)getpid());
    snprintf(dir, sizeof dir, "/tmp/kl-bench-dest-XXXXXX");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", strerror(errno));

    printf("bench_dest: %ld messages (nested object + 3-element list), "
           "%d shards, chunks of %ld per shard, %s, into Postgres\n",
           messages, SHARDS, chunk, kl_write_disposition_name(wd));
    printf("normaliser + destination, a worker (thread, connection) per shard, one transaction "
           "per chunk:\n");
    fflush(stdout);
    run_loader(url, ds, messages, chunk, wd, &ours);
    peak_kib = proc_kib("VmHWM:");

    c = PQconnectdb(url);
    if (c == NULL || PQstatus(c) != CONNECTION_OK)
        die("connect", c != NULL ? PQerrorMessage(c) : "no memory");
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    n = list_tables(c, ds, names, 32);
    export_tables(c, ds, names, n, dir);
    run_plain_copy(c, ds, ds_copy, names, n, dir, &plain);
    if (plain.rows != ours.rows) {
        char msg[128];
        snprintf(msg, sizeof msg, "plain COPY loaded %llu rows, the loader %llu", plain.rows,
                 ours.rows);
        die("rows differ", msg);
    }
    ratio = (ours.rows / ours.seconds) / (plain.rows / plain.seconds);

    printf("results (%d tables, %llu rows):\n", n, ours.rows);
    printf("  loader:     %8.2f s  %10.0f rows/s  %10.0f messages/s\n", ours.seconds,
           ours.rows / ours.seconds, ours.messages / ours.seconds);
    printf("              (workers spent %.2f s of their %.2f s in the destination)\n",
           ours.write_seconds, ours.seconds * SHARDS);
    printf("  plain COPY: %8.2f s  %10.0f rows/s  (the same rows from files)\n", plain.seconds,
           plain.rows / plain.seconds);
    printf("  ratio to plain COPY: %.2f (goal >= 0.70) %s\n", ratio,
           ratio >= 0.7 ? "met" : "MISSED");
    printf("  peak RSS: %.1f MiB (goal <= 64 MiB) %s\n", (double)peak_kib / 1024,
           peak_kib <= 64 * 1024 ? "met" : "MISSED");

    if (!keep) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", ds);
        PQclear(PQexec(c, sql));
        snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", ds_copy);
        PQclear(PQexec(c, sql));
        for (int t = 0; t < n; t++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s.copy", dir, names[t]);
            unlink(path);
        }
        rmdir(dir);
    } else {
        printf("kept schemas %s, %s and files in %s\n", ds, ds_copy, dir);
    }
    PQfinish(c);
    return 0;
}
