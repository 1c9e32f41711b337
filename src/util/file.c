/* Whole files (util/file.h). A file of its own, free of the rest of util/,
 * so that the benchmarks can link it beside helpers of their own that
 * share util/'s names. */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

char *read_file_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t got = 0, cap = 8192;
	char *buf = malloc(cap);
	while (buf != NULL) {
		if (cap - got < 4096) {
			char *p = realloc(buf, cap * 2);
			if (p == NULL)
				break;
			buf = p;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			close(fd);
			buf[got] = '\0';
			if (len != NULL)
				*len = got;
			return buf;
		}
		got += (size_t)n;
	}
	close(fd);
	free(buf);
	return NULL;
}
