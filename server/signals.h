/*
 * Process signals for `serve`: SIGTERM and SIGINT become a byte in a
 * self-pipe that the main thread waits on (the handler does nothing else, so
 * it is async-signal-safe and any thread may take the signal); SIGPIPE is
 * ignored (a client that hangs up is an error return, not a death).
 */
#ifndef KL_SERVER_SIGNALS_H
#define KL_SERVER_SIGNALS_H

struct kl_err;

/* Installs the handlers; the previous ones are kept for kl_signals_restore.
 * Not nestable: one owner at a time. */
int kl_signals_install(struct kl_err *err);

/* Puts the previous handlers back and closes the pipe. */
void kl_signals_restore(void);

/* Waits at most `timeout_ms` (-1: forever) for a stop request. Returns the
 * signal number (SIGTERM for kl_signals_request_stop), 0 on timeout, -1 when
 * not installed. */
int kl_signals_wait(int timeout_ms);

/* The same as receiving SIGTERM, for tests and fatal errors elsewhere. */
void kl_signals_request_stop(void);

/* "SIGTERM", "SIGINT", or "signal N". */
const char *kl_signal_name(int sig);

#endif
