/* Raw TCP for the tests that must control every byte a client sends and
 * see every byte it gets (libcurl hides both): connections from a chosen
 * loopback address, sends and reads bounded in time, and the memory of a
 * process.
 *
 * Every helper is bounded: none waits longer than the time it is given.
 * Traffic goes only to 127.0.0.1, from addresses of 127.0.0.0/8.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A blocking TCP connection to 127.0.0.1:port from src (an address of
 * 127.0.0.0/8, or NULL for the kernel's choice) with rcvbuf bytes of
 * receive buffer when > 0 (set before connecting, so that the window is
 * small from the start). -1 when it cannot be made within 3 s. */
int raw_dial(int port, const char *src, int rcvbuf);

/* The same without waiting for the handshake: a non-blocking socket whose
 * connect() is under way (poll it for POLLOUT), or -1. */
int raw_dial_start(int port, const char *src);

/* Sends what it can of data[0..len) within timeout_ms (the socket may be
 * blocking or not): the number of bytes sent; fewer when the peer stopped
 * taking them, reset or closed the connection. */
size_t raw_send(int fd, const void *data, size_t len, int timeout_ms);

/* How a read ended. */
enum raw_end {
	RAW_STOP = 0, /* stop was found */
	RAW_EOF,      /* the peer closed (FIN) */
	RAW_RESET,    /* the peer reset the connection */
	RAW_TIMEOUT,  /* timeout_ms passed */
	RAW_FULL,     /* cap bytes read */
};

/* Reads into buf (cap bytes, NUL-terminated: at most cap - 1 are read)
 * until stop (NULL: none) appears in what was read, the peer closes or
 * resets, or timeout_ms pass. Returns the bytes read; *end says why it
 * stopped. */
size_t raw_read(int fd, char *buf, size_t cap, const char *stop, int timeout_ms, enum raw_end *end);

/* Reads and drops until the peer closes or resets, or timeout_ms pass:
 * the bytes dropped, with *end. */
size_t raw_drain(int fd, int timeout_ms, enum raw_end *end);

/* The status of the first HTTP status line in resp, or 0. */
int raw_status(const char *resp);

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"), or -1. */
long raw_proc_kb(pid_t pid, const char *field);

/* Raises this process's descriptor limit to its hard limit (children, a
 * daemon started afterwards included, inherit it); returns the limit. */
long raw_raise_nofile(void);
