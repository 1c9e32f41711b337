/* What the http/ files share; nothing outside http/ includes it. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "http/server.h"

struct MHD_Daemon;
struct relay_pool;

/* One accepted connection while its socket is ours: from accept() until it
 * is handed to libmicrohttpd, or until the relay closes it. */
struct http_conn {
	struct http_server *srv;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char ip[64];	   /* the client's address, as text */
	char host[320];	   /* the Host of its first request ("" when none) */
	char target[1024]; /* its request-target, cut short if longer */
	char method[16];   /* the method of its first request */
	bool listed;	   /* on srv->conns (under srv->lock) */
	struct http_conn *prev, *next;
};

struct http_server {
	struct MHD_Daemon *mhd;
	http_handler handler;
	void *ctx;
	size_t max_body;
	struct http_host_hooks hosts;
	bool has_hosts;

	/* The front door (http/accept.c). */
	int listen_fd;
	pthread_t accept_thread;
	bool accept_running;
	pthread_mutex_t lock;	 /* guards what follows */
	pthread_cond_t drained;	 /* n_threads reached 0 */
	struct http_conn *conns; /* sockets that http_server_stop() shuts down */
	int n_threads;		 /* connection threads alive */
	bool stopping;

	/* The relay's workers (http/relay_pool.c), when there are hosts hooks. */
	struct relay_pool *relays;
};

/* Starts listening on addr:port and the accept thread. */
int http_accept_start(struct http_server *srv, const char *addr, int port, struct bk_err *err);
/* Stops accepting, shuts every connection of ours down and waits for
 * their threads to end. */
void http_accept_stop(struct http_server *srv);
/* Hands conn's socket to libmicrohttpd (conn is freed). */
void http_mhd_adopt(struct http_server *srv, struct http_conn *conn);
/* Takes conn off the list that stop shuts down, before its socket closes. */
void http_conn_unlist(struct http_conn *conn);

/* Starts and stops the threads that move relayed bytes; stop only once
 * no connection thread is left. */
int http_relay_start(struct http_server *srv, struct bk_err *err);
void http_relay_stop(struct http_server *srv);
/* Serves conn (a relayed host) to its end: opens the upstream, relays every
 * request and answer, closes and frees conn (http/relay.c). */
void http_proxy_serve(struct http_conn *conn);
