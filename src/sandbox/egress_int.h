/* Sessions' outbound network, inside the namespaces backend: what
 * sandbox/egress.c (interfaces, nftables, conntrack) and egress_dns.c (the
 * sessions' resolver) share. core/ never includes it.
 *
 * A session granted egress gets a veth pair: "eth0" in its own network
 * namespace with the second address of a /30 of the backend's range, its
 * host end "<prefix><index>" with the first, a default route through it.
 * No bridge: each session's packets reach the host on an interface of
 * their own, where one nftables table of the daemon's (inet bunker_<hash>)
 * decides, in a chain of that session's, what may pass; what passes is
 * masqueraded on its way out. The resolver is a thread of the daemon: the
 * table redirects a session's UDP port 53 (of any address) and its TCP
 * port 53 of its gateway or of NS_RESOLVER_ADDR to it.
 *
 * Locks: egress->lock guards the nfnetlink sockets, the index table and
 * every session's struct ns_net; egress->nft_lock the libnftables context
 * alone, taken after egress->lock or without it (the warm pool makes a
 * network's chains under nft_lock only). Both are leaves otherwise
 * (nothing else is taken while one is held).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sandbox/sandbox.h"

struct mnl_socket;
struct nft_ctx;
struct ns_sbx;

#define NS_NET_PINS_MAX 512
/* The nameserver of every session's resolv.conf (sandbox/image.c): in the
 * default range and nobody's address (its index 0 is never given out). */
#define NS_RESOLVER_ADDR "10.213.0.1"

struct ns_net_pin {
	uint32_t addr;	    /* host order */
	int64_t expires_ms; /* wall clock */
};

/* The web ports of a policy (allow_http, allow_https), as bits. */
#define NS_WEB_HTTP 1u
#define NS_WEB_HTTPS 2u

/* One session's network; owned by its sandbox (struct ns_sbx's net). */
struct ns_net {
	int index;	       /* its /30 in the range, 1.. */
	char ifname[16];       /* the host end */
	uint32_t addr, gw;     /* host order: the session's, the host end's */
	struct sbx_net policy; /* what it is allowed now */
	struct ns_net_pin pins[NS_NET_PINS_MAX];
	size_t n_pins;
	/* The host end's counters when last read (egress->lock): they only
	 * grow, and outlive the interface, which the kernel removes with the
	 * sandbox's namespace. */
	int64_t tx_bytes, rx_bytes;
	/* The two numbers its chains were written with (the rest of a
	 * policy is in its sets). */
	int rules_mbps, rules_connections;
	/* The ports of the set web that hold its address now (NS_WEB_*). */
	unsigned web;
	/* By the warm pool with the hint above, and not granted anything
	 * yet: it passed nothing, and resolved no name. */
	bool prepared;
	char id[32]; /* the session it belongs to */
};

struct ns_dns_host {
	uint32_t addr; /* host order */
	char name[SBX_NET_DOMAIN_MAX];
};

struct ns_egress {
	bool ready; /* false: sessions get no network (why says why) */
	/* The host forwarded no packets before a daemon of ours switched
	 * ip_forward on: forwarding stays ours alone (the table drops the
	 * rest). */
	bool forward_ours_only;
	char why[600];
	uint32_t base;	  /* host order, the range's first address */
	int prefix;	  /* of the range */
	int n_slots;	  /* /30s in the range; index 0 is never used */
	char table[32];	  /* "bunker_<hash>" */
	char ifprefix[9]; /* "bk<6 hex>" */
	pthread_mutex_t lock;
	pthread_mutex_t nft_lock; /* guards nft alone (see Locks above) */
	struct nft_ctx *nft;
	/* Set elements' and a session's removal's batches go here (see
	 * nfnl_batch_send() in egress.c); NULL until the first. */
	struct mnl_socket *nfnl;
	/* The ctnetlink socket of the last cut of connections, kept for the
	 * next one for the same reason; NULL while a cut has it. */
	struct mnl_socket *ctnl;
	struct ns_net **slots; /* by index */
	/* Slots whose rules could not be removed: never given again. */
	bool *slot_dirty;
	int64_t tx_total, rx_total; /* bytes of the networks that went */
	/* The last grant's policy without its names (bandwidth, connection
	 * cap, CIDRs, web ports), which the warm pool's networks are prepared
	 * with: a grant with the same finds its rules and sets written, and a
	 * create with it sends the kernel nothing. */
	struct sbx_net hint;
	int64_t tx_told, rx_told; /* the highest totals answered: they never go back */
	/* The resolver (sandbox/egress_dns.c). */
	int dns_fd, dns_tcp_fd, upstream_fd, wake_fd[2];
	int dns_port, dns_tcp_port;
	bool dns_running;
	pthread_t dns_thread;
	uint32_t upstream; /* host order; 0: none, every forwarded name fails */
	int upstream_port; /* 53 unless --dns-upstream says otherwise */
	struct ns_dns_host *hosts;
	size_t n_hosts;
};

/* Before anything else: e holds nothing, and may be closed. */
void ns__egress_init(struct ns_egress *e);
/* Sets the backend's egress up (its table, with whatever an earlier run
 * left removed first, and the resolver). When the host cannot, egress is
 * left off with why said, and sessions get loopback only: never fatal. */
void ns__egress_open(struct ns_egress *e, const struct sbx_backend_config *cfg, const char *hash);
/* Removes the table and every interface of the backend, ends the resolver. */
void ns__egress_close(struct ns_egress *e);
/* The net_set operation of struct sbx_ops. */
int ns__net_set(struct sbx *s, const struct sbx_net *net, struct bk_err *err);
int ns__net_prepare(struct sbx *s, struct bk_err *err);
/* Removes s's network (interface, rules, connections); from stop(). */
void ns__net_release(struct ns_sbx *s);
/* After adopt(): the network follows the sandbox to its new id. */
void ns__net_rename(struct ns_sbx *s);
/* The net_bytes operation of struct sbx_ops. */
void ns__net_bytes(struct sbx *s, int64_t *tx, int64_t *rx);

/* The bytes every session's network carried so far, those gone included;
 * never less than an earlier answer (a Prometheus counter). */
void ns__net_totals(struct ns_egress *e, int64_t *tx, int64_t *rx);

/* ---- what egress.c offers the resolver ---- */

/* With e->lock held: the network whose session address is addr. */
struct ns_net *ns__egress_find_locked(struct ns_egress *e, uint32_t addr);
/* With e->lock held: whether name is one n's policy lets the resolver
 * answer, and whether its addresses are pinned open. */
bool ns__net_name_allowed_locked(const struct ns_net *n, const char *name, bool *pin);
/* With e->lock held: opens addrs (host order) to n for ttl_s seconds. */
int ns__net_pin_locked(struct ns_egress *e, struct ns_net *n, const uint32_t *addrs, size_t count,
		       uint32_t ttl_s);

/* ---- the resolver (sandbox/egress_dns.c) ---- */

/* upstream: "ADDRESS[:PORT]" to forward to ("": the first IPv4
 * nameserver of /etc/resolv.conf). */
int ns__dns_start(struct ns_egress *e, const char *hosts_file, const char *upstream, char *why,
		  size_t len);
void ns__dns_stop(struct ns_egress *e);
