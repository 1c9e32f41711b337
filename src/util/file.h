/* Whole files, for callers that cannot take all of util/util.h (the tests'
 * and benchmarks' own helpers share some of its names). */
#pragma once

#include <stddef.h>

/* A whole file of any size in a new NUL-terminated buffer (caller frees),
 * its length in *len when len is not NULL; NULL when it cannot be read. */
char *read_file_all(const char *path, size_t *len);
