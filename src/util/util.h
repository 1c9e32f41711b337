/* Small helpers shared by every layer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock, in milliseconds and microseconds since the epoch. */
int64_t now_ms(void);
/* Monotonic clock, in microseconds and nanoseconds. */
int64_t mono_us(void);
int64_t mono_ns(void);

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" for a time in ms into buf (>= 32 bytes). */
void iso8601_ms(int64_t ms, char *buf, size_t len);

/* Fills buf with len random characters of [a-z0-9] and a NUL (buf holds
 * len + 1 bytes). Returns 0, or -1 with err set. */
int random_alnum(char *buf, size_t len, struct bk_err *err);
/* A TCP port at *s: 1..65535 in decimal without leading zeros, so that
 * each port has one spelling; on success *s moves past it. */
bool port_parse(const char **s, int *port);
/* Fills out with len random bytes. */
int random_bytes(void *out, size_t len, struct bk_err *err);

/* Writes the whole string to path (O_WRONLY|O_CLOEXEC, no create): for
 * cgroup and proc files. */
int write_file_str(const char *path, const char *s, struct bk_err *err);
/* Reads at most len-1 bytes of a small file into buf, NUL-terminated.
 * Returns the length, or -1 with err set. */
ssize_t read_file_small(const char *path, char *buf, size_t len, struct bk_err *err);

/* write(2)/read(2) of exactly len bytes, retrying on EINTR and short counts.
 * read_full returns 0 at a clean EOF before any byte, 1 when all was read, -1
 * on error or EOF mid-way (errno EPIPE). */
int write_full(int fd, const void *buf, size_t len);
int read_full(int fd, void *buf, size_t len);

/* snprintf(3) of a path into buf: 0, or -1 with errno ENAMETOOLONG when it
 * does not fit (buf then holds nothing usable). A path is never cut. */
int path_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct open_how;
/* openat2(2), asked again while the kernel answers EAGAIN: a lookup scoped
 * by RESOLVE_BENEATH or RESOLVE_IN_ROOT that passes ".." fails so whenever
 * a mount or a rename happened anywhere on the host during it, and
 * sessions' creates mount all the time. EAGAIN only after 1000 tries. */
int openat2_retry(int dirfd, const char *path, struct open_how *how);

/* mkdir -p of path with mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode, struct bk_err *err);
/* rm -rf that stays on one filesystem and never follows symlinks. */
int rm_rf(const char *path, struct bk_err *err);
/* The same of the entry name of the directory dirfd. */
int rm_rf_at(int dirfd, const char *name, struct bk_err *err);

/* Bounded growable byte buffer (after curl's dynbuf). */
struct buf {
	char *data;
	size_t len, cap, max;
	bool truncated; /* an append went past max and was cut */
};
void buf_init(struct buf *b, size_t max);
/* Appends, cutting at max (sets truncated). Returns -1 only on ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
/* The bytes b will have allocated once len more are appended (it grows by
 * doubling): what to charge for its memory. */
size_t buf_cap_after(const struct buf *b, size_t len);
void buf_free(struct buf *b);
/* Returns the buffer's data, NUL-terminated, and empties b; caller frees. */
char *buf_take(struct buf *b);
