/* The sandbox's network: a new namespace with only the loopback interface,
 * brought up so that a server inside can listen on 127.0.0.1; and the
 * daemon's way in for previews, without bridge, NAT or published port. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox/ns_int.h"

int ns__net_setup_child(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return r;
}

int ns__dial(struct sbx *base, int port, int timeout_ms, struct bk_err *err)
{
	struct ns_sbx *sbx = ns_sbx_of(base);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)sbx->pid);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return bk_err_set(err, errno, "cannot open the network of session %s",
				  sbx->base.id);
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0) {
		close(ns);
		return bk_err_set(err, errno, "cannot open this thread's network namespace");
	}
	/* A socket belongs to the namespace it was made in: enter it on this
	 * thread alone, make the socket, and come straight back. */
	int fd = -1, e = 0;
	if (setns(ns, CLONE_NEWNET) < 0) {
		e = errno;
	} else {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		e = fd < 0 ? errno : 0;
		if (setns(home, CLONE_NEWNET) < 0) {
			/* This thread would serve the next request from inside a
			 * sandbox's network: nothing can be trusted after this. */
			fprintf(stderr, "bunkerd: fatal: cannot return to the host network\n");
			abort();
		}
	}
	close(ns);
	close(home);
	if (fd < 0)
		return bk_err_set(err, e, "cannot reach into session %s", sbx->base.id);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		e = errno;
		close(fd);
		return e == ECONNREFUSED
			   ? bk_err_kind(err, BK_E_UNAVAILABLE,
					 "nothing listens on port %d in session %s", port,
					 sbx->base.id)
			   : bk_err_set(err, e, "cannot connect to port %d in session %s", port,
					sbx->base.id);
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int r = poll(&p, 1, timeout_ms);
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
		close(fd);
		if (soerr == ECONNREFUSED)
			return bk_err_kind(err, BK_E_UNAVAILABLE,
					   "nothing listens on port %d in session %s", port,
					   sbx->base.id);
		return bk_err_set(err, r == 0 ? ETIMEDOUT : soerr,
				  "cannot connect to port %d in session %s", port, sbx->base.id);
	}
	/* Blocking from here: the proxy relays with poll() of its own. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}
