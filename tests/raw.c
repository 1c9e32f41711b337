/* Raw TCP for tests: see raw.h. */
#include "raw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int left_ms(double deadline)
{
	double l = deadline - now_ms();
	return l <= 0 ? 0 : (int)l + 1;
}

static int socket_from(const char *src)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (src) {
		struct sockaddr_in sa = {.sin_family = AF_INET};
		if (inet_pton(AF_INET, src, &sa.sin_addr) != 1 ||
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

int raw_dial(int port, const char *src, int rcvbuf)
{
	int fd = socket_from(src);
	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct timeval tv = {.tv_sec = 3};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = loopback(port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int raw_dial_start(int port, const char *src)
{
	int fd = socket_from(src);
	if (fd < 0)
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	struct sockaddr_in sa = loopback(port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

size_t raw_send(int fd, const void *data, size_t len, int timeout_ms)
{
	const char *p = data;
	size_t sent = 0;
	double deadline = now_ms() + timeout_ms;
	while (sent < len) {
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		int pr = poll(&pf, 1, left_ms(deadline));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0 || (pf.revents & (POLLERR | POLLHUP)))
			break;
		ssize_t n = send(fd, p + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	return sent;
}

size_t raw_read(int fd, char *buf, size_t cap, const char *stop, int timeout_ms, enum raw_end *end)
{
	size_t len = 0;
	double deadline = now_ms() + timeout_ms;
	buf[0] = '\0';
	for (;;) {
		if (stop && strstr(buf, stop)) {
			*end = RAW_STOP;
			return len;
		}
		if (len + 1 >= cap) {
			*end = RAW_FULL;
			return len;
		}
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int pr = poll(&pf, 1, left_ms(deadline));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			*end = RAW_TIMEOUT;
			return len;
		}
		ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			*end = n == 0 ? RAW_EOF : RAW_RESET;
			return len;
		}
		len += (size_t)n;
		buf[len] = '\0';
	}
}

size_t raw_drain(int fd, int timeout_ms, enum raw_end *end)
{
	static char sink[1 << 16];
	size_t total = 0;
	double deadline = now_ms() + timeout_ms;
	for (;;) {
		size_t n = raw_read(fd, sink, sizeof(sink), NULL, left_ms(deadline), end);
		total += n;
		if (*end != RAW_FULL)
			return total;
	}
}

int raw_status(const char *resp)
{
	int st = 0;
	if (resp && sscanf(resp, "HTTP/1.%*d %d", &st) != 1)
		return 0;
	return st;
}

long raw_proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	long v = -1;
	size_t fl = strlen(field);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			v = atol(line + fl + 1);
	fclose(f);
	return v;
}

long raw_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return (long)rl.rlim_cur;
}
