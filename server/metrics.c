/*
 * Rendering and counting of metrics.h. Process figures come from /proc and
 * getrusage at scrape time; nothing is sampled in the background.
 */
#include "server/metrics.h"
#include "core/kinesis/client.h"
#include "core/load/engine.h"
#include "core/store/store.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const double bucket_bounds[KL_HTTP_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

static const int counted_codes[KL_HTTP_CODES] = {
    200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 409, 413, 415, 500, 502, 503,
};

/* When the process started: /proc/self/stat's starttime after boot, plus btime. */
static double process_start_time(void)
{
    char buf[1024];
    const char *p;
    unsigned long long start_ticks = 0, btime = 0;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n;
    int field;

    if (f == NULL)
        return (double)time(NULL);
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which may hold spaces: start after the last ')' */
    p = strrchr(buf, ')');
    for (field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p + 1, "%llu", &start_ticks) != 1 || hz <= 0)
        return (double)time(NULL);
    f = fopen("/proc/stat", "re");
    if (f == NULL)
        return (double)time(NULL);
    while (fgets(buf, sizeof buf, f) != NULL) {
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    }
    fclose(f);
    if (btime == 0)
        return (double)time(NULL);
    return (double)btime + (double)start_ticks / (double)hz;
}

int kl_http_metrics_init(struct kl_http_metrics *m, const struct kl_api_route *routes, size_t n,
                         struct kl_err *err)
{
    m->routes = routes;
    m->n_routes = n;
    m->stats = calloc(n + 1, sizeof *m->stats);
    if (m->stats == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory for HTTP metrics");
    for (size_t i = 0; i <= n; i++) {
        for (size_t b = 0; b <= KL_HTTP_BUCKETS; b++)
            atomic_init(&m->stats[i].buckets[b], 0);
        atomic_init(&m->stats[i].sum_us, 0);
        for (size_t c = 0; c <= KL_HTTP_CODES; c++)
            atomic_init(&m->stats[i].codes[c], 0);
    }
    atomic_init(&m->in_flight, 0);
    m->start_time_s = process_start_time();
    return KL_OK;
}

void kl_http_metrics_free(struct kl_http_metrics *m)
{
    free(m->stats);
    m->stats = NULL;
}

void kl_http_metrics_observe(struct kl_http_metrics *m, size_t route_index, int status,
                             uint64_t duration_us)
{
    struct kl_http_route_stats *s;
    double seconds = (double)duration_us / 1e6;
    size_t b = 0, c = 0;

    if (route_index > m->n_routes)
        route_index = m->n_routes;
    s = &m->stats[route_index];
    while (b < KL_HTTP_BUCKETS && seconds > bucket_bounds[b])
        b++;
    while (c < KL_HTTP_CODES && counted_codes[c] != status)
        c++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, duration_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->codes[c], 1, memory_order_relaxed);
}

static void route_labels(const struct kl_http_metrics *m, size_t i, const char **route,
                         const char **method)
{
    if (i < m->n_routes) {
        *route = m->routes[i].pattern;
        *method = m->routes[i].method;
    } else {
        *route = "unmatched";
        *method = "any";
    }
}

static int render_http(struct kl_http_metrics *m, struct kl_buf *out, struct kl_err *err)
{
    int rc = kl_buf_append_str(out,
                               "# HELP kl_http_requests_total HTTP requests answered, by route "
                               "and status code.\n"
                               "# TYPE kl_http_requests_total counter\n",
                               err);
    for (size_t i = 0; rc == KL_OK && i <= m->n_routes; i++) {
        const char *route, *method;
        route_labels(m, i, &route, &method);
        for (size_t c = 0; rc == KL_OK && c <= KL_HTTP_CODES; c++) {
            uint64_t v = atomic_load_explicit(&m->stats[i].codes[c], memory_order_relaxed);
            char code[8];
            if (v == 0)
                continue;
            if (c < KL_HTTP_CODES)
                snprintf(code, sizeof code, "%d", counted_codes[c]);
            else
                snprintf(code, sizeof code, "other");
            rc = kl_buf_printf(out, err,
                               "kl_http_requests_total{route=\"%s\",method=\"%s\",code=\"%s\"} "
                               "%llu\n",
                               route, method, code, (unsigned long long)v);
        }
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(out,
                               "# HELP kl_http_request_duration_seconds Time from the request "
                               "line to the response, by route.\n"
                               "# TYPE kl_http_request_duration_seconds histogram\n",
                               err);
    for (size_t i = 0; rc == KL_OK && i <= m->n_routes; i++) {
        const char *route, *method;
        uint64_t cumulative = 0;
        route_labels(m, i, &route, &method);
        for (size_t b = 0; rc == KL_OK && b <= KL_HTTP_BUCKETS; b++) {
            char le[16];
            cumulative += atomic_load_explicit(&m->stats[i].buckets[b], memory_order_relaxed);
            if (b < KL_HTTP_BUCKETS)
                snprintf(le, sizeof le, "%g", bucket_bounds[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            rc = kl_buf_printf(out, err,
                               "kl_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                               "le=\"%s\"} %llu\n",
                               route, method, le, (unsigned long long)cumulative);
        }
        if (rc == KL_OK)
            rc = kl_buf_printf(
                out, err,
                "kl_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
                "kl_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
                route, method,
                (double)atomic_load_explicit(&m->stats[i].sum_us, memory_order_relaxed) / 1e6,
                route, method, (unsigned long long)cumulative);
    }
    if (rc == KL_OK)
        rc = kl_buf_printf(out, err,
                           "# HELP kl_http_requests_in_flight HTTP requests being answered.\n"
                           "# TYPE kl_http_requests_in_flight gauge\n"
                           "kl_http_requests_in_flight %lld\n",
                           (long long)atomic_load(&m->in_flight));
    return rc;
}

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static int render_process(const struct kl_http_metrics *m, struct kl_buf *out, struct kl_err *err)
{
    struct rusage ru;
    struct rlimit rl;
    unsigned long long vm_pages = 0, rss_pages = 0;
    long page = sysconf(_SC_PAGESIZE), fds;
    FILE *f;
    int rc = KL_OK;

    if (getrusage(RUSAGE_SELF, &ru) == 0)
        rc = kl_buf_printf(out, err,
                           "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
                           "# TYPE process_cpu_seconds_total counter\n"
                           "process_cpu_seconds_total %.6f\n",
                           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    f = fopen("/proc/self/statm", "re");
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &vm_pages, &rss_pages) != 2)
            vm_pages = rss_pages = 0;
        fclose(f);
    }
    if (rc == KL_OK && page > 0 && vm_pages > 0)
        rc = kl_buf_printf(out, err,
                           "# HELP process_resident_memory_bytes Resident memory size.\n"
                           "# TYPE process_resident_memory_bytes gauge\n"
                           "process_resident_memory_bytes %llu\n"
                           "# HELP process_virtual_memory_bytes Virtual memory size.\n"
                           "# TYPE process_virtual_memory_bytes gauge\n"
                           "process_virtual_memory_bytes %llu\n",
                           rss_pages * (unsigned long long)page,
                           vm_pages * (unsigned long long)page);
    fds = count_open_fds();
    if (rc == KL_OK && fds >= 0)
        rc = kl_buf_printf(out, err,
                           "# HELP process_open_fds Open file descriptors.\n"
                           "# TYPE process_open_fds gauge\n"
                           "process_open_fds %ld\n",
                           fds);
    if (rc == KL_OK && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        rc = kl_buf_printf(out, err,
                           "# HELP process_max_fds Limit of open file descriptors.\n"
                           "# TYPE process_max_fds gauge\n"
                           "process_max_fds %llu\n",
                           (unsigned long long)rl.rlim_cur);
    if (rc == KL_OK)
        rc = kl_buf_printf(out, err,
                           "# HELP process_start_time_seconds Start time of the process since "
                           "the Unix epoch.\n"
                           "# TYPE process_start_time_seconds gauge\n"
                           "process_start_time_seconds %.2f\n"
                           "# HELP kl_build_info The running version.\n"
                           "# TYPE kl_build_info gauge\n"
                           "kl_build_info{version=\"%s\"} 1\n",
                           m->start_time_s, KL_VERSION);
    return rc;
}

int kl_http_metrics_render(struct kl_http_metrics *m, struct kl_buf *out, struct kl_err *err)
{
    int rc = render_http(m, out, err);
    if (rc == KL_OK)
        rc = render_process(m, out, err);
    return rc;
}

/* ---- the engine's metrics ---- */

/* A label value as the text format wants it: \\, \" and \n escaped. */
static int append_label(struct kl_buf *out, const char *v, struct kl_err *err)
{
    int rc = KL_OK;
    for (; rc == KL_OK && *v; v++) {
        if (*v == '\\' || *v == '"')
            rc = kl_buf_printf(out, err, "\\%c", *v);
        else if (*v == '\n')
            rc = kl_buf_append_str(out, "\\n", err);
        else
            rc = kl_buf_append(out, v, 1, err);
    }
    return rc;
}

static int render_counter(struct kl_buf *out, const char *name, const char *help, uint64_t v,
                          struct kl_err *err)
{
    return kl_buf_printf(out, err, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name,
                         name, (unsigned long long)v);
}

/* The pages' share of KL_MEMORY_MAX. */
static int render_memory(const struct kl_engine_stats *e, struct kl_buf *out, struct kl_err *err)
{
    int rc = kl_buf_printf(
        out, err,
        "# HELP kl_page_memory_limit_bytes What GetRecords pages may hold at once (the pages' "
        "share of KL_MEMORY_MAX; 0: no limit).\n"
        "# TYPE kl_page_memory_limit_bytes gauge\nkl_page_memory_limit_bytes %llu\n"
        "# HELP kl_page_memory_bytes What GetRecords pages reserve or hold now.\n"
        "# TYPE kl_page_memory_bytes gauge\nkl_page_memory_bytes %llu\n"
        "# HELP kl_page_memory_peak_bytes The most GetRecords pages held at once.\n"
        "# TYPE kl_page_memory_peak_bytes gauge\nkl_page_memory_peak_bytes %llu\n",
        (unsigned long long)e->page_memory_limit, (unsigned long long)e->page_memory_held,
        (unsigned long long)e->page_memory_peak);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_page_memory_waits_total",
                            "GetRecords calls that waited for memory (KL_MEMORY_MAX).",
                            e->page_memory_waits, err);
    if (rc == KL_OK)
        rc = kl_buf_printf(out, err,
                           "# HELP kl_page_memory_wait_seconds_total Time GetRecords calls "
                           "waited for memory.\n# TYPE kl_page_memory_wait_seconds_total "
                           "counter\nkl_page_memory_wait_seconds_total %.3f\n",
                           (double)e->page_memory_wait_ms / 1000.0);
    return rc;
}

/* A histogram of milliseconds as seconds, its buckets cumulative. */
static int render_histogram(struct kl_buf *out, const char *name, const char *help,
                            const struct kl_histogram_snapshot *h, struct kl_err *err)
{
    uint64_t cumulative = 0;
    int rc = kl_buf_printf(out, err, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

    for (size_t b = 0; rc == KL_OK && b <= h->n_bounds; b++) {
        cumulative += h->counts[b];
        if (b < h->n_bounds)
            rc = kl_buf_printf(out, err, "%s_bucket{le=\"%g\"} %llu\n", name,
                               (double)h->bounds_ms[b] / 1000.0, (unsigned long long)cumulative);
        else
            rc = kl_buf_printf(out, err, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                               (unsigned long long)cumulative);
    }
    if (rc == KL_OK)
        rc = kl_buf_printf(out, err, "%s_sum %.3f\n%s_count %llu\n", name,
                           (double)h->sum_ms / 1000.0, name, (unsigned long long)h->count);
    return rc;
}

static int render_lags(const struct kl_engine_metrics *m, struct kl_buf *out, struct kl_err *err)
{
    int rc = kl_buf_append_str(out,
                               "# HELP kl_shard_millis_behind_latest MillisBehindLatest of the "
                               "last page this process read from the shard (kept 15 min).\n"
                               "# TYPE kl_shard_millis_behind_latest gauge\n",
                               err);
    for (size_t i = 0; rc == KL_OK && i < m->n_lags; i++) {
        const struct kl_shard_lag *l = &m->lags[i];
        rc = kl_buf_append_str(out, "kl_shard_millis_behind_latest{pipeline=\"", err);
        if (rc == KL_OK)
            rc = append_label(out, l->pipeline, err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(out, "\",stream=\"", err);
        if (rc == KL_OK)
            rc = append_label(out, l->stream, err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(out, "\",shard=\"", err);
        if (rc == KL_OK)
            rc = append_label(out, l->shard_id, err);
        if (rc == KL_OK)
            rc = kl_buf_printf(out, err, "\"} %lld\n", (long long)l->millis_behind);
    }
    return rc;
}

int kl_engine_metrics_render(const struct kl_engine_metrics *m, struct kl_buf *out,
                             struct kl_err *err)
{
    const struct kl_kinesis_stats *k = m->kinesis;
    const struct kl_store_stats *s = m->store;
    const struct kl_engine_stats *e = m->engine;
    int rc = kl_buf_printf(out, err,
                           "# HELP kl_store_up Whether the state store answered this scrape.\n"
                           "# TYPE kl_store_up gauge\nkl_store_up %d\n",
                           s != NULL ? 1 : 0);

    if (rc == KL_OK && s != NULL)
        rc = kl_buf_append_str(out,
                               "# HELP kl_jobs Jobs in the state store by status (finished jobs "
                               "while they are kept).\n# TYPE kl_jobs gauge\n",
                               err);
    for (int st = 0; rc == KL_OK && s != NULL && st < KL_STORE_JOB_STATUSES; st++)
        rc = kl_buf_printf(out, err, "kl_jobs{status=\"%s\"} %lld\n",
                           kl_store_job_status_name((enum kl_store_job_status)st),
                           (long long)s->jobs[st]);
    if (rc == KL_OK && s != NULL)
        rc = kl_buf_printf(out, err,
                           "# HELP kl_tasks Shard tasks in the queue by state.\n"
                           "# TYPE kl_tasks gauge\nkl_tasks{state=\"queued\"} %lld\n"
                           "kl_tasks{state=\"in_flight\"} %lld\nkl_tasks{state=\"delayed\"} %lld\n",
                           (long long)s->queued, (long long)s->in_flight, (long long)s->delayed);
    if (rc == KL_OK)
        rc =
            render_counter(out, "kl_messages_loaded_total",
                           "Messages this process committed to the destination.", e->messages, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_rows_loaded_total",
                            "Rows this process committed to the destination, all tables.", e->rows,
                            err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_dead_letters_total",
                            "Messages this process wrote to _kinesis_dead_letters.",
                            e->dead_letters, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_chunks_committed_total",
                            "Chunk transactions this process committed.", e->chunks, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_task_retries_total",
                            "Shard task attempts that failed and were queued again.",
                            e->task_retries, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_task_yields_total",
                            "Shard tasks that gave their worker to waiting tasks "
                            "(KL_TASK_SLICE_S).",
                            e->task_yields, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_task_failures_total",
                            "Shard tasks that failed their job after their attempts.",
                            e->task_failures, err);
    if (rc == KL_OK)
        rc = render_memory(e, out, err);
    if (rc == KL_OK)
        rc = render_histogram(out, "kl_record_commit_latency_seconds",
                              "From a message's arrival in Kinesis (ApproximateArrivalTimestamp) "
                              "to the commit of its rows, messages this process committed.",
                              &e->commit_latency, err);
    if (rc == KL_OK)
        rc = kl_buf_printf(out, err,
                           "# HELP kl_shard_leases_held Shard leases this process's workers hold "
                           "now.\n# TYPE kl_shard_leases_held gauge\nkl_shard_leases_held %lld\n",
                           (long long)e->leases_held);
    if (rc == KL_OK)
        rc = render_lags(m, out, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_kinesis_requests_total",
                            "Kinesis API requests sent, retries included.", k->requests, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_kinesis_retries_total",
                            "Kinesis API attempts after the first.", k->retries, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_kinesis_throttles_total", "Throttling answers from Kinesis.",
                            k->throttles, err);
    if (rc == KL_OK)
        rc = render_counter(out, "kl_kinesis_failures_total",
                            "Kinesis calls that failed after their retries.", k->failures, err);
    return rc;
}
