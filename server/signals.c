/*
 * The self-pipe of signals.h. The pipe is non-blocking on both ends: a
 * flood of signals fills it and later bytes are dropped, which loses nothing
 * (one byte is enough to stop).
 */
#include "server/signals.h"
#include "core/util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int stop_pipe[2] = {-1, -1};
static struct sigaction old_term, old_int, old_pipe;
static bool installed;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (stop_pipe[1] >= 0)
        (void)!write(stop_pipe[1], &b, 1);
    errno = saved;
}

int kl_signals_install(struct kl_err *err)
{
    struct sigaction sa, ign;

    if (installed)
        return kl_err_set(err, KL_ERR_INTERNAL, "signal handlers are already installed");
    if (pipe(stop_pipe) != 0)
        return kl_err_set(err, KL_ERR_IO, "pipe for signals: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        if (fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC) != 0 ||
            fcntl(stop_pipe[i], F_SETFL, O_NONBLOCK) != 0) {
            int e = errno;
            close(stop_pipe[0]);
            close(stop_pipe[1]);
            stop_pipe[0] = stop_pipe[1] = -1;
            return kl_err_set(err, KL_ERR_IO, "pipe for signals: %s", strerror(e));
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGTERM, &sa, &old_term) != 0) {
        int e = errno;
        close(stop_pipe[0]);
        close(stop_pipe[1]);
        stop_pipe[0] = stop_pipe[1] = -1;
        return kl_err_set(err, KL_ERR_IO, "sigaction(SIGTERM): %s", strerror(e));
    }
    if (sigaction(SIGINT, &sa, &old_int) != 0 || sigaction(SIGPIPE, &ign, &old_pipe) != 0) {
        int e = errno;
        (void)sigaction(SIGTERM, &old_term, NULL);
        (void)sigaction(SIGINT, &old_int, NULL);
        close(stop_pipe[0]);
        close(stop_pipe[1]);
        stop_pipe[0] = stop_pipe[1] = -1;
        return kl_err_set(err, KL_ERR_IO, "sigaction: %s", strerror(e));
    }
    installed = true;
    return KL_OK;
}

void kl_signals_restore(void)
{
    if (!installed)
        return;
    (void)sigaction(SIGTERM, &old_term, NULL);
    (void)sigaction(SIGINT, &old_int, NULL);
    (void)sigaction(SIGPIPE, &old_pipe, NULL);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    stop_pipe[0] = stop_pipe[1] = -1;
    installed = false;
}

int kl_signals_wait(int timeout_ms)
{
    struct pollfd pfd;
    unsigned char b;
    int n;

    if (!installed)
        return -1;
    pfd.fd = stop_pipe[0];
    pfd.events = POLLIN;
    pfd.revents = 0;
    n = poll(&pfd, 1, timeout_ms);
    if (n <= 0)
        return 0; /* timeout or EINTR: the caller asks again */
    if (read(stop_pipe[0], &b, 1) != 1)
        return 0;
    return b;
}

void kl_signals_request_stop(void)
{
    on_signal(SIGTERM);
}

const char *kl_signal_name(int sig)
{
    static _Thread_local char buf[24];
    if (sig == SIGTERM)
        return "SIGTERM";
    if (sig == SIGINT)
        return "SIGINT";
    snprintf(buf, sizeof buf, "signal %d", sig);
    return buf;
}
