/*
 * `kinesis-loader serve` stopping with SIGTERM while clients misbehave, the
 * real binary: a client that sent half a request and stalled, and an idle
 * kept-alive connection, do not hold the stop; it exits 0 well within the
 * grace period. (A stalled client used to keep it waiting the whole grace,
 * "requests still running", exit 1.) Needs no services: SQLite in /tmp,
 * in-process state, and a Kinesis endpoint that is never called.
 */
#include "tests/support/test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts serve on a free port; returns the port, read from its "listening"
 * log line. `*log` is the read end of its stderr. */
static int serve(const char *db, FILE **log)
{
    int fds[2];
    char line[4096];
    int port = 0;

    assert_int_equal(pipe(fds), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        setenv("KL_LISTEN", "127.0.0.1:0", 1);
        setenv("KL_SQLITE_PATH", db, 1);
        setenv("KL_SHUTDOWN_GRACE_S", "20", 1);
        setenv("KL_LOG_LEVEL", "info", 1);
        setenv("AWS_REGION", "us-east-1", 1);
        setenv("AWS_ACCESS_KEY_ID", "AKIDSTOP", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "x", 1);
        setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9", 1);
        unsetenv("DATABASE_URL");
        unsetenv("REDIS_URL");
        unsetenv("KL_API_TOKEN");
        unsetenv("KL_API_TOKEN_FILE");
        execl(KL_BINARY, "kinesis-loader", "serve", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *log = fdopen(fds[0], "r");
    assert_non_null(*log);
    while (port == 0 && fgets(line, sizeof line, *log) != NULL) {
        const char *p = strstr(line, "\"msg\":\"listening\"");
        if (p != NULL && (p = strstr(line, "\"port\":")) != NULL)
            port = atoi(p + 7);
    }
    if (port == 0)
        fail_msg("serve did not say where it listens");
    return port;
}

static int connect_to(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void stalled_clients_do_not_hold_the_stop(void **state)
{
    char db[128], buf[4096];
    FILE *log = NULL;
    int port, stalled, stalled_body, idle, status = 0;
    int64_t t0, took;
    bool said_still_running = false;
    ssize_t n;
    (void)state;

    snprintf(db, sizeof db, "/tmp/%s.db", kl_test_unique("kl-serve-stop"));
    port = serve(db, &log);
    /* half a request: the headers never complete */
    stalled = connect_to(port);
    send_all(stalled, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    /* a request line and nothing more */
    stalled_body = connect_to(port);
    send_all(stalled_body, "GET /readyz HTTP/1.1\r\n");
    /* a kept-alive connection, idle after a complete exchange */
    idle = connect_to(port);
    send_all(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    n = recv(idle, buf, sizeof buf - 1, 0);
    assert_true(n > 12);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "200 OK"));
    usleep(200 * 1000);

    t0 = now_ms();
    assert_int_equal(kill(child, SIGTERM), 0);
    assert_int_equal(waitpid(child, &status, 0), child);
    took = now_ms() - t0;
    child = 0;
    while (fgets(buf, sizeof buf, log) != NULL)
        if (strstr(buf, "still running") != NULL)
            said_still_running = true;
    fclose(log);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0 || took > 5000 || said_still_running)
        fail_msg("serve exited %d after %lld ms%s", WEXITSTATUS(status), (long long)took,
                 said_still_running ? ", saying requests were still running" : "");
    /* the stalled connections were closed, not left hanging */
    assert_true(recv(stalled, buf, sizeof buf, 0) <= 0);
    close(stalled);
    close(stalled_body);
    close(idle);
    unlink(db);
}

static int teardown(void **state)
{
    (void)state;
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(stalled_clients_do_not_hold_the_stop, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
