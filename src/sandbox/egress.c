/* Sessions' outbound network: a veth pair per session granted egress, one
 * nftables table of the daemon's that decides what each may reach, and
 * the conntrack entries of what it may reach no more cut (see
 * egress_int.h). The kernel is spoken to directly: rtnetlink and
 * ctnetlink through libmnl, nftables through libnftables for the table,
 * chains and rules and nfnetlink batches of its own for set elements; no
 * ip(8), nft(8) or conntrack(8) runs.
 *
 * One file of some 1,300 lines, and not three: the links, the rules, the
 * sets' elements and the conntrack cuts are steps of one grant or revoke,
 * each taken under the same lock and keyed by the same slot of the
 * session, and apart they would share every helper and that state through
 * a header. What stands on its own, the resolver, is egress_dns.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <nftables/libnftables.h>
#include <dirent.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/egress_int.h"
#include "sandbox/ns_int.h"
#include "util/cleanup.h"

/* Always refused, before any policy is looked at: "this network", the
 * host's loopback range, link-local (169.254.169.254, the cloud metadata
 * address, among it), multicast, the reserved range and broadcast. */
static const char always_blocked[] =
    "0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4";
/* Refused unless a CIDR of the policy names them: RFC 1918, CGNAT and the
 * benchmarking range. */
static const char private_ranges[] =
    "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 198.18.0.0/15";

static const struct {
	uint32_t addr;
	int prefix;
} always_blocked_v[] = {{0x00000000, 8},
			{0x7f000000, 8},
			{0xa9fe0000, 16},
			{0xe0000000, 4},
			{0xf0000000, 4}},
  private_v[] = {
      {0x0a000000, 8}, {0xac100000, 12}, {0xc0a80000, 16}, {0x64400000, 10}, {0xc6120000, 15}};

static bool in_prefix(uint32_t a, uint32_t net, int prefix)
{
	uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
	return (a & mask) == (net & mask);
}

/* Whether c lies inside one of the private ranges: only such a CIDR
 * opens (part of) a private range. A wider one (0.0.0.0/0, 10.0.0.0/7)
 * opens the public addresses it covers and no private one. */
static bool cidr_is_private(const struct sbx_net_cidr *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(private_v); i++)
		if (c->prefix >= private_v[i].prefix &&
		    in_prefix(c->addr, private_v[i].addr, private_v[i].prefix))
			return true;
	return false;
}

static void ip_str(uint32_t a, char *out)
{
	struct in_addr in = {htonl(a)};
	inet_ntop(AF_INET, &in, out, INET_ADDRSTRLEN);
}

/* ---- nftables ---- */

__attribute__((format(printf, 2, 3))) static int bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *text = NULL;
	int n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	int r = buf_append(b, text, (size_t)n);
	free(text);
	return r < 0 || b->truncated ? -1 : 0;
}

/* libnftables writes the table and a session's chains, rules and sets
 * (the verdict maps' entries within a set's declaration, "add map ... {
 * ...; elements = { ... } }", which adds them to the map that exists).
 * Elements, their flushes and a session's removal go over nfnetlink
 * directly (nfnl_*): libnftables would first fetch every set of the
 * table, and for an "add element" or "delete element" every set's
 * elements too, three sets per session (at 400 sessions, 1,224 netlink
 * messages and some 50 ms for one grant). */
static const char cidr_set_type[] = "type ipv4_addr; flags interval;";
static const char pin_set_type[] = "type ipv4_addr; flags timeout;";
static const char vmap_type[] = "type ifname : verdict;";
static const char reject[] = "reject with icmpx admin-prohibited";
/* The policy that grants nothing: what a network's sets hold when made. */
static const struct sbx_net net_none;

/* Runs nft commands, under e->nft_lock (with or without e->lock held); a
 * failure says nft's message. */
static int nft_run(struct ns_egress *e, const char *cmds, struct bk_err *err)
{
	pthread_mutex_lock(&e->nft_lock);
	int r = 0;
	if (nft_run_cmd_from_buffer(e->nft, cmds) != 0) {
		const char *msg = nft_ctx_get_error_buffer(e->nft);
		r = bk_err_kind(err, BK_E_INTERNAL, "nftables refused the rules of %s: %.300s",
				e->table, msg ? msg : "?");
	}
	pthread_mutex_unlock(&e->nft_lock);
	return r;
}

/* The table: what no session may reach is refused first, for all of
 * them; who reaches what else is decided in one chain per session,
 * reached by a verdict map keyed on the interface; everything else of the
 * backend's interfaces is dropped, IPv6 wholly. The sets every session's
 * chain looks at are named, and no rule of a session has an anonymous
 * set: libnftables fetches every set of the table for a rule that names
 * one, and the kernel validates the table's every chain at each commit
 * that adds a rule, so a session's rules are few and change rarely (see
 * nft_session_rules). */
static int nft_table_create_locked(struct ns_egress *e, struct bk_err *err)
{
	char range[INET_ADDRSTRLEN];
	ip_str(e->base, range);
	_cleanup_free_ char *cmds = NULL;
	const char *p = e->ifprefix, *t = e->table;
	if (asprintf(
		&cmds,
		"table inet %s\n"
		"delete table inet %s\n"
		"table inet %s {\n"
		" map out { %s }\n"
		" map in { %s }\n"
		" set blocked { type ipv4_addr; flags interval; elements = { %s } }\n"
		" set private { type ipv4_addr; flags interval; elements = { %s } }\n"
		/* The web ports each session's address may reach on any public
		 * address (NS_WEB_*): one set for all, found at the head of the
		 * table's list of sets by every batch that names it. */
		" set web { type ipv4_addr . inet_service; }\n"
		" chain bk_forward { type filter hook forward priority filter - 10; policy "
		"accept;\n"
		"  meta nfproto ipv6 iifname \"%s*\" drop\n"
		"  meta nfproto ipv6 oifname \"%s*\" drop\n"
		"  iifname \"%s*\" ip daddr @blocked %s\n"
		"  iifname \"%s*\" ip daddr %s/%d %s\n"
		"  iifname \"%s*\" fib daddr type { local, broadcast, multicast, anycast } %s\n"
		"  iifname vmap @out\n"
		"  oifname vmap @in\n"
		"  iifname \"%s*\" drop\n"
		"  oifname \"%s*\" drop\n"
		"%s"
		" }\n"
		" chain bk_input { type filter hook input priority filter - 10; policy accept;\n"
		"  iifname \"%s*\" meta nfproto ipv4 ip daddr %s/%d udp dport %d accept\n"
		/* Only what bk_pre redirected from port 53 of the session's
		 * own gateway reaches the resolver's TCP port. */
		"  iifname \"%s*\" meta nfproto ipv4 tcp dport %d ct status dnat"
		" ct original proto-dst 53 fib daddr . iif type local accept\n"
		"  iifname \"%s*\" meta l4proto tcp reject with tcp reset\n"
		"  iifname \"%s*\" drop\n"
		" }\n"
		" chain bk_pre { type nat hook prerouting priority dstnat; policy accept;\n"
		"  iifname \"%s*\" meta nfproto ipv4 udp dport 53 redirect to :%d\n"
		/* TCP 53 of the address every session's resolv.conf names,
		 * and of the session's own gateway; any other address's goes
		 * through the session's chain like any connection. */
		"  iifname \"%s*\" meta nfproto ipv4 ip daddr " NS_RESOLVER_ADDR
		" tcp dport 53 redirect to :%d\n"
		"  iifname \"%s*\" meta nfproto ipv4 fib daddr . iif type local"
		" tcp dport 53 redirect to :%d\n"
		" }\n"
		" chain bk_post { type nat hook postrouting priority srcnat; policy accept;\n"
		"  meta nfproto ipv4 ip saddr %s/%d oifname != \"%s*\" masquerade\n"
		" }\n"
		"}\n",
		t, t, t, vmap_type, vmap_type, always_blocked, private_ranges, p, p, p, reject, p,
		range, e->prefix, reject, p, reject, p, p,
		e->forward_ours_only ? "  iifname != \"bk*\" oifname != \"bk*\" drop\n" : "", p,
		range, e->prefix, e->dns_port, p, e->dns_tcp_port, p, p, p, e->dns_port, p,
		e->dns_tcp_port, p, e->dns_tcp_port, range, e->prefix, p) < 0)
		return bk_err_set(err, ENOMEM, "cannot build the egress table");
	return nft_run(e, cmds, err);
}

_Static_assert((int)NFTA_SET_ELEM_LIST_TABLE == (int)NFTA_SET_TABLE &&
		   (int)NFTA_SET_TABLE == (int)NFTA_CHAIN_TABLE,
	       "one attribute names the table of every message");

/* Appends to batch b an nf_tables message of type on table (family inet)
 * that asks for an acknowledgement; returns it for its attributes. */
static struct nlmsghdr *nfnl_put(struct mnl_nlmsg_batch *b, uint16_t type, uint16_t flags,
				 const char *table)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
	h->nlmsg_type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | type);
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
	g->nfgen_family = NFPROTO_INET;
	g->version = NFNETLINK_V0;
	g->res_id = htons(NFNL_SUBSYS_NFTABLES);
	/* The table is attribute 1 of every nf_tables message (see the
	 * _Static_assert above). */
	if (table)
		mnl_attr_put_strz(h, NFTA_SET_ELEM_LIST_TABLE, table);
	return h;
}

/* Reads what the kernel queued on fd until nothing is left: the first
 * error it answered, or 0. */
static int nfnl_drain(int fd, unsigned portid)
{
	char buf[8192];
	int err = 0;
	for (;;) {
		ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (got > 0) {
			if (mnl_cb_run(buf, (size_t)got, 0, portid, NULL, NULL) < 0 && err == 0)
				err = errno ? errno : EIO;
		} else if (got < 0 && errno == ENOBUFS) {
			err = err ? err : ENOBUFS; /* answers were dropped */
		} else if (got < 0 && errno != EINTR) {
			return err;
		}
	}
}

/* Sends a batch on the table's own nfnetlink socket (with e->lock held)
 * and reads every answer the kernel queued while it took it in (it does
 * so within the send): 0, or the first error's errno.
 *
 * The socket stays open for the egress's lifetime: closing a bound
 * nfnetlink socket has nf_tables wait, under its commit mutex, for the
 * transactions already committed to be freed, which is after an RCU
 * grace period (nft_rcv_nl_event() flushes the destroy work). A socket
 * per batch made every grant wait for one: 15 ms on this 2-core machine
 * with 1,000 sessions, where the batch itself took 0.6 ms. */
static int nfnl_batch_send(struct ns_egress *e, const void *batch, size_t len)
{
	if (e->nfnl == NULL) {
		e->nfnl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
		if (e->nfnl == NULL)
			return errno;
		if (mnl_socket_bind(e->nfnl, 0, MNL_SOCKET_AUTOPID) < 0) {
			int err = errno;
			mnl_socket_close(e->nfnl);
			e->nfnl = NULL;
			return err;
		}
	}
	int fd = mnl_socket_get_fd(e->nfnl);
	unsigned portid = mnl_socket_get_portid(e->nfnl);
	/* Nothing of an earlier batch is left (each reads all its answers),
	 * unless the kernel dropped some: that batch's news, not this one's. */
	nfnl_drain(fd, portid);
	if (mnl_socket_sendto(e->nfnl, batch, len) < 0)
		return errno;
	return nfnl_drain(fd, portid);
}

static void nfnl_batch_mark(struct mnl_nlmsg_batch *b, uint16_t type)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = htons(NFNL_SUBSYS_NFTABLES);
	mnl_nlmsg_batch_next(b);
}

/* Starts a message of elements of set (NFT_MSG_NEWSETELEM or
 * NFT_MSG_DELSETELEM; one that lists none flushes the set): *list is the
 * nest that nfnl_elem() adds to and nfnl_elems_end() closes. */
static struct nlmsghdr *nfnl_elems_begin(struct mnl_nlmsg_batch *b, uint16_t type,
					 const char *table, const char *set)
{
	struct nlmsghdr *h =
	    nfnl_put(b, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, table);
	mnl_attr_put_strz(h, NFTA_SET_ELEM_LIST_SET, set);
	return h;
}

/* One element: its key, NFT_SET_ELEM_INTERVAL_END or 0, and a timeout
 * that also restarts one that exists (0: none). */
static void nfnl_elem(struct nlmsghdr *h, const void *key, size_t len, uint32_t flags,
		      uint64_t timeout_ms)
{
	struct nlattr *el = mnl_attr_nest_start(h, NFTA_LIST_ELEM);
	struct nlattr *kn = mnl_attr_nest_start(h, NFTA_SET_ELEM_KEY);
	mnl_attr_put(h, NFTA_DATA_VALUE, len, key);
	mnl_attr_nest_end(h, kn);
	if (flags)
		mnl_attr_put_u32(h, NFTA_SET_ELEM_FLAGS, htonl(flags));
	if (timeout_ms) {
		mnl_attr_put_u64(h, NFTA_SET_ELEM_TIMEOUT, htobe64(timeout_ms));
		mnl_attr_put_u64(h, NFTA_SET_ELEM_EXPIRATION, htobe64(timeout_ms));
	}
	mnl_attr_nest_end(h, el);
}

static int cidr_cmp(const void *a, const void *b)
{
	const struct sbx_net_cidr *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Appends to b the elements of an interval set of IPv4 addresses that
 * holds the cidrs: each merged run of them a start and, unless it reaches
 * the last address, an end one past it (the kernel's intervals may not
 * overlap, which nft(8) would see to with auto-merge). */
static void nfnl_cidrs(struct mnl_nlmsg_batch *b, const char *table, const char *set,
		       const struct sbx_net_cidr *cidrs, size_t n)
{
	struct sbx_net_cidr sorted[SBX_NET_CIDRS_MAX];
	memcpy(sorted, cidrs, n * sizeof(*cidrs));
	qsort(sorted, n, sizeof(*sorted), cidr_cmp);
	struct nlmsghdr *h = nfnl_elems_begin(b, NFT_MSG_NEWSETELEM, table, set);
	struct nlattr *list = mnl_attr_nest_start(h, NFTA_SET_ELEM_LIST_ELEMENTS);
	for (size_t i = 0; i < n;) {
		uint64_t lo = sorted[i].addr, hi = lo + (1ull << (32 - sorted[i].prefix));
		for (i++; i < n && sorted[i].addr <= hi; i++) {
			uint64_t end = sorted[i].addr + (1ull << (32 - sorted[i].prefix));
			if (end > hi)
				hi = end;
		}
		uint32_t key = htonl((uint32_t)lo);
		nfnl_elem(h, &key, sizeof(key), 0, 0);
		if (hi <= UINT32_MAX) {
			key = htonl((uint32_t)hi);
			nfnl_elem(h, &key, sizeof(key), NFT_SET_ELEM_INTERVAL_END, 0);
		}
	}
	mnl_attr_nest_end(h, list);
	mnl_nlmsg_batch_next(b);
}

/* Appends to b the rules of n's chains (which exist, and are flushed
 * first): they hold only what the sets cannot, its address, bandwidth
 * and connection cap, so that a grant that keeps those two numbers
 * changes elements alone (nft_session_elements), which the kernel takes
 * without validating the table again. */
static int nft_session_rules(struct ns_egress *e, const struct ns_net *n, int mbps, int connections,
			     struct buf *b)
{
	const char *t = e->table;
	int i = n->index;
	char addr[INET_ADDRSTRLEN];
	ip_str(n->addr, addr);
	long kbytes = (long)mbps * 125; /* Mbit/s to kB/s */
	/* The kernel's bucket holds a second of the rate and the burst: a
	 * tenth of a second on top (at least 64 kB), where a burst of a whole
	 * second let transfers shorter than two seconds pass at any speed.
	 * The burst is in bytes of 32 bits in the kernel: 4,000,000 kB at
	 * most (at 100,000 Mbit/s a second's burst overflowed). */
	long burst = kbytes / 10;
	burst = burst < 64 ? 64 : burst > 4000000 ? 4000000 : burst;
	int r = 0;
	r |= bprintf(b, "flush chain inet %s s%d_out\nflush chain inet %s s%d_in\n", t, i, t, i);
#define OUT(...) (r |= bprintf(b, "add rule inet %s s%d_out ", t, i), r |= bprintf(b, __VA_ARGS__))
	OUT("ip saddr != %s drop\n", addr);
	OUT("limit rate over %ld kbytes/second burst %ld kbytes drop\n", kbytes, burst);
	OUT("ct state established,related accept\n");
	OUT("ct state != new drop\n");
	OUT("ct count over %d %s\n", connections, reject);
	/* CIDRs inside a private range before the private ranges' refusal,
	 * the others after it: 0.0.0.0/0 opens the internet, not the
	 * host's neighbours. */
	OUT("ip daddr @s%d_pcidr accept\n", i);
	OUT("ip daddr @private %s\n", reject);
	OUT("ip daddr @s%d_cidr accept\n", i);
	OUT("ip daddr @s%d_pin accept\n", i);
	OUT("ip saddr . tcp dport @web accept\n");
	OUT("%s\n", reject);
#undef OUT
	r |= bprintf(
	    b, "add rule inet %s s%d_in limit rate over %ld kbytes/second burst %ld kbytes drop\n",
	    t, i, kbytes, burst);
	r |= bprintf(b, "add rule inet %s s%d_in ct state established,related accept\n", t, i);
	r |= bprintf(b, "add rule inet %s s%d_in drop\n", t, i);
	return r ? -1 : 0;
}

/* Appends to b a message of type (NFT_MSG_NEWSETELEM or DELSETELEM) on
 * the shared set web for the ports (NS_WEB_*) of the session's address
 * addr (host order): each key the address and the port, each field
 * padded to four bytes. */
static void nfnl_web(struct mnl_nlmsg_batch *b, const char *table, uint16_t type, uint32_t addr,
		     unsigned ports)
{
	struct nlmsghdr *h = nfnl_elems_begin(b, type, table, "web");
	struct nlattr *list = mnl_attr_nest_start(h, NFTA_SET_ELEM_LIST_ELEMENTS);
	static const uint16_t port_of[] = {80, 443};
	for (size_t k = 0; k < ARRAY_SIZE(port_of); k++) {
		if (!(ports & (1u << k)))
			continue;
		unsigned char key[8] = {0};
		uint32_t a = htonl(addr);
		uint16_t port = htons(port_of[k]);
		memcpy(key, &a, sizeof(a));
		memcpy(key + 4, &port, sizeof(port));
		nfnl_elem(h, key, sizeof(key), 0, 0);
	}
	mnl_attr_nest_end(h, list);
	mnl_nlmsg_batch_next(b);
}

/* The CIDRs of p in its set private (inside a private range: s%d_pcidr)
 * or not (s%d_cidr), in p's order; their count. */
static size_t cidrs_of(const struct sbx_net *p, bool private, struct sbx_net_cidr *out)
{
	size_t count = 0;
	for (size_t c = 0; c < p->n_cidrs; c++)
		if (cidr_is_private(&p->cidrs[c]) == private)
			out[count++] = p->cidrs[c];
	return count;
}

/* Writes what n's sets hold for its policy, the CIDRs, and the shared set
 * web its ports, and (flush_pins) empties its pins, in one transaction
 * over nfnetlink: through libnftables a flush or an element of a set
 * would have it fetch every set of the table first. was: the policy its
 * CIDR sets hold now (just made: none; prepared by the warm pool: its
 * hint), whose sets that hold what the policy's would are left alone, or
 * NULL when not known, and each is flushed and written: the kernel finds
 * a set by name by walking the table's sets in the order they were made,
 * three of each session's, about 0.7 ms at 1,000 sessions for each
 * session's set a batch names (web, made with the table, is found at
 * once). */
static int nft_session_elements(struct ns_egress *e, struct ns_net *n, const struct sbx_net *was,
				bool flush_pins, struct bk_err *err)
{
	const struct sbx_net *p = &n->policy;
	size_t size = 4096 + p->n_cidrs * 128;
	_cleanup_free_ char *buf = malloc(size);
	if (buf == NULL)
		return bk_err_set(err, ENOMEM, "cannot build the policy of %s", n->ifname);
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, size);
	nfnl_batch_mark(b, NFNL_MSG_BATCH_BEGIN);
	char names[3][32];
	static const char *const kinds[] = {"cidr", "pcidr", "pin"};
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++)
		snprintf(names[k], sizeof(names[k]), "s%d_%s", n->index, kinds[k]);
	bool sent = false;
	/* The CIDR sets: those inside a private range in the set before the
	 * private ranges' refusal, the others in the one after it. */
	struct sbx_net_cidr want[SBX_NET_CIDRS_MAX], held[SBX_NET_CIDRS_MAX];
	for (int k = 0; k < 2; k++) {
		size_t nw = cidrs_of(p, k == 1, want), nh = was ? cidrs_of(was, k == 1, held) : 1;
		if (was && nw == nh && memcmp(want, held, nw * sizeof(want[0])) == 0)
			continue;
		if (nh) {
			nfnl_elems_begin(b, NFT_MSG_DELSETELEM, e->table, names[k]);
			mnl_nlmsg_batch_next(b);
		}
		if (nw)
			nfnl_cidrs(b, e->table, names[k], want, nw);
		sent |= nh || nw;
	}
	/* The web ports: what the shared set holds of n's address is known
	 * (n->web), so that only what changes is sent. */
	unsigned web = (p->http ? NS_WEB_HTTP : 0) | (p->https ? NS_WEB_HTTPS : 0);
	if (n->web & ~web) {
		nfnl_web(b, e->table, NFT_MSG_DELSETELEM, n->addr, n->web & ~web);
		sent = true;
	}
	if (web & ~n->web) {
		nfnl_web(b, e->table, NFT_MSG_NEWSETELEM, n->addr, web & ~n->web);
		sent = true;
	}
	if (flush_pins) {
		nfnl_elems_begin(b, NFT_MSG_DELSETELEM, e->table, names[2]);
		mnl_nlmsg_batch_next(b);
		sent = true;
	}
	nfnl_batch_mark(b, NFNL_MSG_BATCH_END);
	int r = sent ? nfnl_batch_send(e, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) : 0;
	mnl_nlmsg_batch_stop(b);
	if (r)
		return bk_err_kind(err, BK_E_INTERNAL, "nftables refused the policy of %s: %s",
				   n->ifname, strerror(r));
	n->web = web;
	return 0;
}

static int nft_session_del_locked(struct ns_egress *e, const struct ns_net *n);

/* Makes n's chains, rules and sets, and their verdict maps' entries,
 * without e->lock: libnftables fills its cache from the kernel first (at
 * 1,000 sessions some 40-70 ms of the warm pool's), and a grant, a pin or
 * a count waited for it all that time. Its sets' elements then under
 * e->lock, as every batch of nfnl_batch_send(). */
static int nft_session_add(struct ns_egress *e, struct ns_net *n, struct bk_err *err)
{
	const char *t = e->table;
	int i = n->index;
	struct buf b;
	buf_init(&b, 1 << 20);
	int r = bprintf(&b,
			"add chain inet %s s%d_out\nadd chain inet %s s%d_in\n"
			"add set inet %s s%d_cidr { %s }\n"
			"add set inet %s s%d_pcidr { %s }\n"
			"add set inet %s s%d_pin { %s }\n",
			t, i, t, i, t, i, cidr_set_type, t, i, cidr_set_type, t, i, pin_set_type);
	if (r < 0 || nft_session_rules(e, n, n->policy.mbps, n->policy.connections, &b) < 0 ||
	    bprintf(&b,
		    "add map inet %s out { %s elements = { \"%s\" : jump s%d_out } }\n"
		    "add map inet %s in { %s elements = { \"%s\" : jump s%d_in } }\n",
		    t, vmap_type, n->ifname, i, t, vmap_type, n->ifname, i) < 0) {
		buf_free(&b);
		return bk_err_set(err, ENOMEM, "cannot build the rules of %s", n->ifname);
	}
	r = nft_run(e, b.data, err);
	buf_free(&b);
	if (r < 0)
		return -1;
	pthread_mutex_lock(&e->lock);
	n->rules_mbps = n->policy.mbps;
	n->rules_connections = n->policy.connections;
	/* Its sets are empty until now: it passed nothing meanwhile. */
	if ((r = nft_session_elements(e, n, &net_none, false, err)) < 0 &&
	    nft_session_del_locked(e, n) != 0)
		e->slot_dirty[n->index] = true;
	pthread_mutex_unlock(&e->lock);
	return r;
}

/* Deletes n's entries of the verdict maps and of the set web, its chains
 * and its sets in one transaction, over nfnetlink: through libnftables
 * the entries' deletion would fetch every set's elements first (see
 * cidr_set_type). 0 or an errno: then all of it stays, and n's slot must
 * not be given again (its address would find n's ports open). */
static int nft_session_del_locked(struct ns_egress *e, const struct ns_net *n)
{
	char buf[8192], name[NFT_NAME_MAXLEN];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof(buf));
	nfnl_batch_mark(b, NFNL_MSG_BATCH_BEGIN);
	char key[IFNAMSIZ] = {0};
	snprintf(key, sizeof(key), "%s", n->ifname);
	static const char *const maps[] = {"out", "in"}, *const dirs[] = {"out", "in"};
	for (size_t k = 0; k < ARRAY_SIZE(maps); k++) {
		struct nlmsghdr *h = nfnl_put(b, NFT_MSG_DELSETELEM, 0, e->table);
		mnl_attr_put_strz(h, NFTA_SET_ELEM_LIST_SET, maps[k]);
		struct nlattr *list = mnl_attr_nest_start(h, NFTA_SET_ELEM_LIST_ELEMENTS);
		struct nlattr *el = mnl_attr_nest_start(h, NFTA_LIST_ELEM);
		struct nlattr *kn = mnl_attr_nest_start(h, NFTA_SET_ELEM_KEY);
		mnl_attr_put(h, NFTA_DATA_VALUE, sizeof(key), key);
		mnl_attr_nest_end(h, kn);
		mnl_attr_nest_end(h, el);
		mnl_attr_nest_end(h, list);
		mnl_nlmsg_batch_next(b);
	}
	for (size_t k = 0; k < ARRAY_SIZE(dirs); k++) {
		struct nlmsghdr *h = nfnl_put(b, NFT_MSG_DELCHAIN, 0, e->table);
		snprintf(name, sizeof(name), "s%d_%s", n->index, dirs[k]);
		mnl_attr_put_strz(h, NFTA_CHAIN_NAME, name);
		mnl_nlmsg_batch_next(b);
	}
	if (n->web)
		nfnl_web(b, e->table, NFT_MSG_DELSETELEM, n->addr, n->web);
	static const char *const sets[] = {"cidr", "pcidr", "pin"};
	for (size_t k = 0; k < ARRAY_SIZE(sets); k++) {
		struct nlmsghdr *h = nfnl_put(b, NFT_MSG_DELSET, 0, e->table);
		snprintf(name, sizeof(name), "s%d_%s", n->index, sets[k]);
		mnl_attr_put_strz(h, NFTA_SET_NAME, name);
		mnl_nlmsg_batch_next(b);
	}
	nfnl_batch_mark(b, NFNL_MSG_BATCH_END);
	int err = nfnl_batch_send(e, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b));
	mnl_nlmsg_batch_stop(b);
	if (err)
		fprintf(stderr, "bunkerd: cannot remove the rules of %s from %s: %s\n", n->ifname,
			e->table, strerror(err));
	return err;
}

/* ---- rtnetlink ---- */

struct nl {
	struct mnl_socket *sock;
	unsigned seq;
	char buf[8192];
};

static int nl_open(struct nl *nl)
{
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (nl->sock == NULL)
		return -1;
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl->sock);
		nl->sock = NULL;
		return -1;
	}
	nl->seq = (unsigned)time(NULL);
	return 0;
}

static void nl_close(struct nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
}

static struct nlmsghdr *nl_msg(struct nl *nl, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(nl->buf);
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	h->nlmsg_seq = ++nl->seq;
	return h;
}

/* Sends h and waits for its acknowledgement: 0, or -1 with errno. */
static int nl_talk(struct nl *nl, struct nlmsghdr *h)
{
	if (mnl_socket_sendto(nl->sock, h, h->nlmsg_len) < 0)
		return -1;
	unsigned portid = mnl_socket_get_portid(nl->sock), seq = h->nlmsg_seq;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, nl->buf, sizeof(nl->buf));
		if (n < 0)
			return -1;
		int r = mnl_cb_run(nl->buf, (size_t)n, seq, portid, NULL, NULL);
		if (r <= MNL_CB_STOP)
			return r < 0 ? -1 : 0;
	}
}

static int nl_link_up(struct nl *nl, int ifindex)
{
	struct nlmsghdr *h = nl_msg(nl, RTM_NEWLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	return nl_talk(nl, h);
}

static int nl_addr_add(struct nl *nl, int ifindex, uint32_t addr, int prefix)
{
	struct nlmsghdr *h = nl_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put_u32(h, IFA_LOCAL, htonl(addr));
	mnl_attr_put_u32(h, IFA_ADDRESS, htonl(addr));
	return nl_talk(nl, h);
}

static int nl_route_default(struct nl *nl, int ifindex, uint32_t gw)
{
	struct nlmsghdr *h = nl_msg(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
	struct rtmsg *rt = mnl_nlmsg_put_extra_header(h, sizeof(*rt));
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(h, RTA_GATEWAY, htonl(gw));
	mnl_attr_put_u32(h, RTA_OIF, (uint32_t)ifindex);
	return nl_talk(nl, h);
}

/* A veth pair: host on this side, "eth0" in the namespace of netns_fd. */
static int nl_veth_add(struct nl *nl, const char *host, int netns_fd)
{
	struct nlmsghdr *h = nl_msg(nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, host);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
	struct nlattr *peer = mnl_attr_nest_start(h, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_get_payload_tail(h);
	memset(pifm, 0, sizeof(*pifm));
	h->nlmsg_len += MNL_ALIGN(sizeof(*pifm));
	mnl_attr_put_strz(h, IFLA_IFNAME, "eth0");
	mnl_attr_put_u32(h, IFLA_NET_NS_FD, (uint32_t)netns_fd);
	mnl_attr_nest_end(h, peer);
	mnl_attr_nest_end(h, data);
	mnl_attr_nest_end(h, info);
	return nl_talk(nl, h);
}

static int nl_link_del(const char *name)
{
	struct nl nl = {0};
	int ifindex = (int)if_nametoindex(name);
	if (ifindex == 0 || nl_open(&nl) < 0)
		return -1;
	struct nlmsghdr *h = nl_msg(&nl, RTM_DELLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	int r = nl_talk(&nl, h);
	nl_close(&nl);
	return r;
}

/* Left by the daemon that switched ip_forward on (see ns__egress_open()). */
#define FORWARD_MARK "/run/bunker/ip_forward-was-off"

static void sysctl_write(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, value, strlen(value)) < 0) {
			/* IPv6 may be absent from this kernel: nothing to switch off. */
		}
		close(fd);
	}
}

/* ---- ctnetlink: cutting connections ---- */

#define NS_CT_BUF 32768

struct ct_walk {
	struct ns_egress *e;
	const struct ns_net *n; /* its policy decides; NULL: cut all of addr */
	uint32_t addr;
	/* Entries to delete: their original tuples, copied. */
	char (*tuples)[256];
	size_t *tuple_len;
	size_t count, cap;
};

static bool net_allows(const struct ns_net *n, uint32_t dst, uint8_t proto, uint16_t dport,
		       int64_t now);

struct ct_tuple {
	uint32_t src, dst;
	uint8_t proto;
	uint16_t dport;
};

static int ct_tuple_cb(const struct nlattr *a, void *data)
{
	struct ct_tuple *t = data;
	if (mnl_attr_get_type(a) == CTA_TUPLE_IP) {
		const struct nlattr *in;
		mnl_attr_for_each_nested(in, a)
		{
			if (mnl_attr_get_type(in) == CTA_IP_V4_SRC)
				t->src = ntohl(mnl_attr_get_u32(in));
			else if (mnl_attr_get_type(in) == CTA_IP_V4_DST)
				t->dst = ntohl(mnl_attr_get_u32(in));
		}
	} else if (mnl_attr_get_type(a) == CTA_TUPLE_PROTO) {
		const struct nlattr *in;
		mnl_attr_for_each_nested(in, a)
		{
			if (mnl_attr_get_type(in) == CTA_PROTO_NUM)
				t->proto = mnl_attr_get_u8(in);
			else if (mnl_attr_get_type(in) == CTA_PROTO_DST_PORT)
				t->dport = ntohs(mnl_attr_get_u16(in));
		}
	}
	return MNL_CB_OK;
}

static int ct_entry_cb(const struct nlmsghdr *h, void *data)
{
	struct ct_walk *w = data;
	struct nlattr *a;
	mnl_attr_for_each(a, h, sizeof(struct nfgenmsg))
	{
		if (mnl_attr_get_type(a) != CTA_TUPLE_ORIG)
			continue;
		struct ct_tuple t = {0};
		mnl_attr_parse_nested(a, ct_tuple_cb, &t);
		if (t.src != w->addr)
			return MNL_CB_OK;
		if (w->n && net_allows(w->n, t.dst, t.proto, t.dport, now_ms()))
			return MNL_CB_OK;
		size_t len = mnl_attr_get_len(a);
		if (len > 256)
			return MNL_CB_OK;
		if (w->count == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 16;
			void *nt = realloc(w->tuples, cap * sizeof(*w->tuples));
			void *nl = nt ? realloc(w->tuple_len, cap * sizeof(*w->tuple_len)) : NULL;
			if (nt)
				w->tuples = nt;
			if (nl == NULL)
				return MNL_CB_ERROR;
			w->tuple_len = nl;
			w->cap = cap;
		}
		memcpy(w->tuples[w->count], a, len);
		w->tuple_len[w->count++] = len;
		return MNL_CB_OK;
	}
	return MNL_CB_OK;
}

/* Deletes the conntrack entries that addr opened and n's policy no longer
 * allows (n NULL: all of them), so that their next packet is judged as a
 * new connection, and refused. locked: the caller holds e->lock. */
static void ct_cut(struct ns_egress *e, const struct ns_net *n, uint32_t addr, bool locked)
{
	/* The socket of the last cut, when no other cut has it: a close
	 * would wait for nf_tables (see nfnl_batch_send()). */
	if (!locked)
		pthread_mutex_lock(&e->lock);
	struct mnl_socket *sock = e->ctnl;
	e->ctnl = NULL;
	if (!locked)
		pthread_mutex_unlock(&e->lock);
	if (sock == NULL) {
		sock = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
		if (sock == NULL)
			return;
		if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
			mnl_socket_close(sock);
			return;
		}
	}
	_cleanup_free_ char *buf = malloc(NS_CT_BUF);
	struct ct_walk w = {.e = e, .n = n, .addr = addr};
	unsigned seq = (unsigned)time(NULL), portid = mnl_socket_get_portid(sock);
	if (buf == NULL)
		goto out;
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	h->nlmsg_seq = seq;
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(h, sizeof(*nfg));
	nfg->nfgen_family = AF_INET;
	nfg->version = NFNETLINK_V0;
	if (mnl_socket_sendto(sock, h, h->nlmsg_len) < 0)
		goto out;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(sock, buf, NS_CT_BUF);
		if (len <= 0)
			break;
		int r = mnl_cb_run(buf, (size_t)len, seq, portid, ct_entry_cb, &w);
		if (r <= MNL_CB_STOP)
			break;
	}
	for (size_t i = 0; i < w.count; i++) {
		h = mnl_nlmsg_put_header(buf);
		h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
		h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
		h->nlmsg_seq = ++seq;
		nfg = mnl_nlmsg_put_extra_header(h, sizeof(*nfg));
		nfg->nfgen_family = AF_INET;
		nfg->version = NFNETLINK_V0;
		const struct nlattr *a = (const struct nlattr *)w.tuples[i];
		mnl_attr_put(h, CTA_TUPLE_ORIG | NLA_F_NESTED, mnl_attr_get_payload_len(a),
			     mnl_attr_get_payload(a));
		if (mnl_socket_sendto(sock, h, h->nlmsg_len) < 0)
			break;
		ssize_t len = mnl_socket_recvfrom(sock, buf, NS_CT_BUF);
		if (len > 0)
			mnl_cb_run(buf, (size_t)len, seq, portid, NULL, NULL);
	}
out:
	free(w.tuples);
	free(w.tuple_len);
	if (!locked)
		pthread_mutex_lock(&e->lock);
	if (e->ctnl == NULL && nfnl_drain(mnl_socket_get_fd(sock), portid) == 0) {
		e->ctnl = sock;
		sock = NULL;
	}
	if (!locked)
		pthread_mutex_unlock(&e->lock);
	if (sock)
		mnl_socket_close(sock);
}

/* ---- policy, as the kernel rules read it ---- */

static bool net_blocked_always(const struct ns_egress *e, uint32_t dst)
{
	for (size_t i = 0; i < ARRAY_SIZE(always_blocked_v); i++)
		if (in_prefix(dst, always_blocked_v[i].addr, always_blocked_v[i].prefix))
			return true;
	return in_prefix(dst, e->base, e->prefix);
}

static bool net_allows(const struct ns_net *n, uint32_t dst, uint8_t proto, uint16_t dport,
		       int64_t now)
{
	const struct sbx_net *p = &n->policy;
	for (size_t i = 0; i < p->n_cidrs; i++)
		if (cidr_is_private(&p->cidrs[i]) &&
		    in_prefix(dst, p->cidrs[i].addr, p->cidrs[i].prefix))
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(private_v); i++)
		if (in_prefix(dst, private_v[i].addr, private_v[i].prefix))
			return false;
	for (size_t i = 0; i < p->n_cidrs; i++)
		if (in_prefix(dst, p->cidrs[i].addr, p->cidrs[i].prefix))
			return true;
	for (size_t i = 0; i < n->n_pins; i++)
		if (n->pins[i].addr == dst && n->pins[i].expires_ms > now)
			return true;
	return proto == 6 && ((dport == 80 && p->http) || (dport == 443 && p->https));
}

static bool name_matches(const char *pattern, const char *name)
{
	if (strncmp(pattern, "*.", 2) == 0) {
		size_t pl = strlen(pattern + 1), nl = strlen(name); /* ".example.com" */
		return nl > pl && strcasecmp(name + nl - pl, pattern + 1) == 0;
	}
	return strcasecmp(pattern, name) == 0;
}

bool ns__net_name_allowed_locked(const struct ns_net *n, const char *name, bool *pin)
{
	for (size_t i = 0; i < n->policy.n_domains; i++)
		if (name_matches(n->policy.domains[i], name)) {
			*pin = true;
			return true;
		}
	*pin = false;
	return n->policy.http || n->policy.https;
}

struct ns_net *ns__egress_find_locked(struct ns_egress *e, uint32_t addr)
{
	if (!e->ready || !in_prefix(addr, e->base, e->prefix))
		return NULL;
	uint32_t i = (addr - e->base) / 4;
	if (i == 0 || i >= (uint32_t)e->n_slots || e->slots[i] == NULL || e->slots[i]->addr != addr)
		return NULL;
	return e->slots[i];
}

int ns__net_pin_locked(struct ns_egress *e, struct ns_net *n, const uint32_t *addrs, size_t count,
		       uint32_t ttl_s)
{
	/* A TTL says how long the name holds; a connection opened meanwhile
	 * lives on after it (established connections are not looked at
	 * again). A floor keeps clients that cache a little longer working. */
	if (ttl_s < 60)
		ttl_s = 60;
	if (ttl_s > 86400)
		ttl_s = 86400;
	int64_t now = now_ms(), until = now + (int64_t)ttl_s * 1000;
	size_t size = 4096 + count * 64;
	_cleanup_free_ char *buf = malloc(size);
	if (buf == NULL)
		return -1;
	char set[32];
	snprintf(set, sizeof(set), "s%d_pin", n->index);
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, size);
	nfnl_batch_mark(b, NFNL_MSG_BATCH_BEGIN);
	struct nlmsghdr *h = nfnl_elems_begin(b, NFT_MSG_NEWSETELEM, e->table, set);
	struct nlattr *list = mnl_attr_nest_start(h, NFTA_SET_ELEM_LIST_ELEMENTS);
	size_t added = 0;
	for (size_t k = 0; k < count; k++) {
		uint32_t a = addrs[k];
		if (net_blocked_always(e, a))
			continue;
		/* An expiry given restarts the timeout of a pin that exists
		 * (kernels from 6.10 on; before, it ends when it first would). */
		uint32_t key = htonl(a);
		nfnl_elem(h, &key, sizeof(key), 0, (uint64_t)ttl_s * 1000);
		added++;
		size_t j = 0;
		while (j < n->n_pins && n->pins[j].addr != a && n->pins[j].expires_ms > now)
			j++;
		if (j == n->n_pins) {
			if (n->n_pins == NS_NET_PINS_MAX) {
				/* Full of live pins: the oldest-ending one gives way. */
				j = 0;
				for (size_t q = 1; q < n->n_pins; q++)
					if (n->pins[q].expires_ms < n->pins[j].expires_ms)
						j = q;
			} else {
				n->n_pins++;
			}
		}
		n->pins[j] = (struct ns_net_pin){a, until};
	}
	mnl_attr_nest_end(h, list);
	mnl_nlmsg_batch_next(b);
	nfnl_batch_mark(b, NFNL_MSG_BATCH_END);
	int r = added ? nfnl_batch_send(e, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) : 0;
	mnl_nlmsg_batch_stop(b);
	if (r) {
		fprintf(stderr, "bunkerd: resolver: nftables refused the pins of %s: %s\n",
			n->ifname, strerror(r));
		return -1;
	}
	return 0;
}

/* ---- a session's interface ---- */

/* Configures eth0 inside the namespace of netns_fd, from this thread,
 * which enters it and comes straight back. */
static int net_inside(int netns_fd, uint32_t addr, uint32_t gw, struct bk_err *err)
{
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0)
		return bk_err_set(err, errno, "cannot open this thread's network namespace");
	int r = -1, e = 0;
	struct nl nl = {0};
	if (setns(netns_fd, CLONE_NEWNET) < 0) {
		e = errno;
	} else {
		/* The socket and the sysctl file belong to the namespace they
		 * are opened in. */
		sysctl_write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "1");
		sysctl_write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		int ifindex = (int)if_nametoindex("eth0");
		if (ifindex == 0 || nl_open(&nl) < 0 || nl_addr_add(&nl, ifindex, addr, 30) < 0 ||
		    nl_link_up(&nl, ifindex) < 0 || nl_route_default(&nl, ifindex, gw) < 0)
			e = errno ? errno : EIO;
		else
			r = 0;
		nl_close(&nl);
		if (setns(home, CLONE_NEWNET) < 0) {
			fprintf(stderr, "bunkerd: fatal: cannot return to the host network\n");
			abort();
		}
	}
	close(home);
	if (r < 0)
		return bk_err_set(err, e, "cannot set up the session's interface");
	return 0;
}

static int net_create(struct ns_sbx *s, struct ns_net *n, struct bk_err *err)
{
	struct ns_egress *e = &s->b->egress;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)s->pid);
	_cleanup_close_ int nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		return bk_err_set(err, errno, "cannot open the network of session %s", s->base.id);
	struct nl nl = {0};
	if (nl_open(&nl) < 0)
		return bk_err_set(err, errno, "cannot open rtnetlink");
	int r = nl_veth_add(&nl, n->ifname, nsfd);
	if (r < 0) {
		int en = errno;
		nl_close(&nl);
		return bk_err_set(err, en, "cannot create interface '%s'", n->ifname);
	}
	char sc[128];
	snprintf(sc, sizeof(sc), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", n->ifname);
	sysctl_write(sc, "1");
	int ifindex = (int)if_nametoindex(n->ifname);
	if (ifindex == 0 || nl_addr_add(&nl, ifindex, n->gw, 30) < 0 ||
	    nl_link_up(&nl, ifindex) < 0) {
		int en = errno;
		nl_close(&nl);
		nl_link_del(n->ifname);
		return bk_err_set(err, en, "cannot set up interface '%s'", n->ifname);
	}
	nl_close(&nl);
	if (net_inside(nsfd, n->addr, n->gw, err) < 0) {
		nl_link_del(n->ifname);
		return -1;
	}
	(void)e;
	return 0;
}

static int64_t if_counter(const char *ifname, const char *what)
{
	char path[128], text[32];
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, what);
	if (read_file_small(path, text, sizeof(text), NULL) <= 0)
		return 0;
	return strtoll(text, NULL, 10);
}

static void net_free_locked(struct ns_egress *e, struct ns_sbx *s)
{
	struct ns_net *n = s->net;
	if (nft_session_del_locked(e, n) != 0)
		e->slot_dirty[n->index] = true;
	e->slots[n->index] = NULL;
	s->net = NULL;
}

/* Gives s an interface and a slot with rules for policy (the caller
 * holds no lock): the rules first, so that the interface never passes a
 * packet unjudged. */
static int net_add(struct ns_sbx *s, const struct sbx_net *policy, struct bk_err *err)
{
	struct ns_egress *e = &s->b->egress;
	pthread_mutex_lock(&e->lock);
	int index = 0;
	for (int i = 1; i < e->n_slots; i++)
		if (e->slots[i] == NULL && !e->slot_dirty[i]) {
			index = i;
			break;
		}
	if (index == 0) {
		pthread_mutex_unlock(&e->lock);
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "every address of the sessions' range is taken");
	}
	struct ns_net *n = calloc(1, sizeof(*n));
	if (n == NULL) {
		pthread_mutex_unlock(&e->lock);
		return bk_err_set(err, ENOMEM, "cannot give session %s a network", s->base.id);
	}
	n->index = index;
	n->gw = e->base + (uint32_t)index * 4 + 1;
	n->addr = n->gw + 1;
	n->policy = *policy;
	snprintf(n->id, sizeof(n->id), "%s", s->base.id);
	snprintf(n->ifname, sizeof(n->ifname), "%.8s%u", e->ifprefix, (unsigned)(index & 0xffff));
	e->slots[index] = n; /* taken; no interface passes anything yet */
	pthread_mutex_unlock(&e->lock);
	if (nft_session_add(e, n, err) < 0) {
		pthread_mutex_lock(&e->lock);
		e->slots[index] = NULL;
		pthread_mutex_unlock(&e->lock);
		free(n);
		return -1;
	}
	pthread_mutex_lock(&e->lock);
	s->net = n;
	pthread_mutex_unlock(&e->lock);
	/* The interface outside the lock: the resolver goes on meanwhile. */
	if (net_create(s, n, err) < 0) {
		pthread_mutex_lock(&e->lock);
		net_free_locked(e, s);
		pthread_mutex_unlock(&e->lock);
		free(n);
		bk_err_prefix(err, "session %s", s->base.id);
		return -1;
	}
	return 0;
}

int ns__net_set(struct sbx *base, const struct sbx_net *net, struct bk_err *err)
{
	struct ns_sbx *s = ns_sbx_of(base);
	struct ns_egress *e = &s->b->egress;
	if (!net->enabled) {
		ns__net_release(s);
		return 0;
	}
	if (!e->ready)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "this host gives sessions no network: %s",
				   e->why);
	pthread_mutex_lock(&e->lock);
	/* What the warm pool prepares its networks with next: no names, so
	 * that a prepared network's resolver answers none. */
	e->hint = *net;
	e->hint.n_domains = 0;
	struct ns_net *n = s->net;
	if (n == NULL) {
		pthread_mutex_unlock(&e->lock);
		return net_add(s, net, err);
	}
	bool same_domains =
	    n->policy.n_domains == net->n_domains &&
	    memcmp(n->policy.domains, net->domains, sizeof(net->domains[0]) * net->n_domains) == 0;
	bool prepared = n->prepared;
	/* A prepared network's sets hold the hint's CIDRs and ports, and no
	 * pins: a grant of the same leaves them as they are. */
	_cleanup_free_ struct sbx_net *was = NULL;
	if (prepared && (was = malloc(sizeof(*was))) != NULL)
		*was = n->policy; /* without it, every set is flushed */
	n->policy = *net;
	if (!same_domains)
		n->n_pins = 0;
	int r = 0;
	if (n->rules_mbps != net->mbps || n->rules_connections != net->connections) {
		struct buf b;
		buf_init(&b, 1 << 20);
		r = nft_session_rules(e, n, net->mbps, net->connections, &b) < 0
			? bk_err_set(err, ENOMEM, "cannot build rules")
			: nft_run(e, b.data, err);
		buf_free(&b);
		if (r == 0) {
			n->rules_mbps = net->mbps;
			n->rules_connections = net->connections;
		}
	}
	if (r == 0)
		r = nft_session_elements(e, n, was, !same_domains && !prepared, err);
	/* A prepared network has passed nothing: there is nothing to cut. */
	if (r == 0 && !prepared)
		ct_cut(e, n, n->addr, true);
	n->prepared = false;
	pthread_mutex_unlock(&e->lock);
	return r;
}

int ns__net_prepare(struct sbx *base, struct bk_err *err)
{
	struct ns_sbx *s = ns_sbx_of(base);
	struct ns_egress *e = &s->b->egress;
	if (!e->ready)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "this host gives sessions no network: %s",
				   e->why);
	if (s->net)
		return 0;
	_cleanup_free_ struct sbx_net *hint = malloc(sizeof(*hint));
	if (hint == NULL)
		return bk_err_set(err, ENOMEM, "cannot prepare a network");
	pthread_mutex_lock(&e->lock);
	*hint = e->hint;
	pthread_mutex_unlock(&e->lock);
	if (net_add(s, hint, err) < 0)
		return -1;
	s->net->prepared = true;
	return 0;
}

/* With e->lock held: n's counters brought up to date. What the kernel no
 * longer shows (the interface went with the sandbox's namespace when its
 * PID 1 died) keeps what was last read. */
static void net_count_locked(struct ns_net *n)
{
	/* The host end receives what the session sends. */
	int64_t tx = if_counter(n->ifname, "rx_bytes"), rx = if_counter(n->ifname, "tx_bytes");
	if (tx > n->tx_bytes)
		n->tx_bytes = tx;
	if (rx > n->rx_bytes)
		n->rx_bytes = rx;
}

void ns__net_release(struct ns_sbx *s)
{
	struct ns_egress *e = &s->b->egress;
	if (s->net == NULL)
		return;
	struct ns_net *n = s->net;
	pthread_mutex_lock(&e->lock);
	net_count_locked(n);
	pthread_mutex_unlock(&e->lock);
	nl_link_del(n->ifname);
	pthread_mutex_lock(&e->lock);
	e->tx_total += n->tx_bytes;
	e->rx_total += n->rx_bytes;
	s->net_tx_gone += n->tx_bytes;
	s->net_rx_gone += n->rx_bytes;
	net_free_locked(e, s);
	pthread_mutex_unlock(&e->lock);
	ct_cut(e, NULL, n->addr, false);
	free(n);
}

void ns__net_rename(struct ns_sbx *s)
{
	struct ns_egress *e = &s->b->egress;
	pthread_mutex_lock(&e->lock);
	if (s->net)
		snprintf(s->net->id, sizeof(s->net->id), "%s", s->base.id);
	pthread_mutex_unlock(&e->lock);
}

void ns__net_bytes(struct sbx *base, int64_t *tx, int64_t *rx)
{
	struct ns_sbx *s = ns_sbx_of(base);
	struct ns_egress *e = &s->b->egress;
	pthread_mutex_lock(&e->lock);
	*tx = s->net_tx_gone;
	*rx = s->net_rx_gone;
	if (s->net) {
		net_count_locked(s->net);
		*tx += s->net->tx_bytes;
		*rx += s->net->rx_bytes;
	}
	pthread_mutex_unlock(&e->lock);
}

void ns__net_totals(struct ns_egress *e, int64_t *tx, int64_t *rx)
{
	*tx = *rx = 0;
	if (!e->ready)
		return;
	/* The interfaces are read outside the lock, 64 at a time, so that a
	 * scrape at 1,000 sessions does not hold the resolver up. */
	char names[64][16];
	pthread_mutex_lock(&e->lock);
	*tx = e->tx_total;
	*rx = e->rx_total;
	int k = 0;
	for (int i = 1; i < e->n_slots; i++)
		if (e->slots[i]) {
			if (k == 64) {
				pthread_mutex_unlock(&e->lock);
				for (int j = 0; j < k; j++) {
					*tx += if_counter(names[j], "rx_bytes");
					*rx += if_counter(names[j], "tx_bytes");
				}
				k = 0;
				pthread_mutex_lock(&e->lock);
			}
			snprintf(names[k++], sizeof(names[0]), "%s", e->slots[i]->ifname);
		}
	pthread_mutex_unlock(&e->lock);
	for (int j = 0; j < k; j++) {
		*tx += if_counter(names[j], "rx_bytes");
		*rx += if_counter(names[j], "tx_bytes");
	}
	/* A network that went meanwhile, or whose sandbox died (its last
	 * bytes read when it was last counted, not now), may make this sum a
	 * little less than the last one: a counter never goes back. */
	pthread_mutex_lock(&e->lock);
	if (*tx < e->tx_told)
		*tx = e->tx_told;
	if (*rx < e->rx_told)
		*rx = e->rx_told;
	e->tx_told = *tx;
	e->rx_told = *rx;
	pthread_mutex_unlock(&e->lock);
}

/* ---- the backend's part ---- */

/* Removes interfaces an earlier run of this backend left (their sandboxes
 * are gone or about to be). */
static void stale_links_remove(const struct ns_egress *e)
{
	_cleanup_closedir_ DIR *d = opendir("/sys/class/net");
	struct dirent *de;
	size_t pl = strlen(e->ifprefix);
	while (d && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, e->ifprefix, pl) == 0 && de->d_name[pl] >= '0' &&
		    de->d_name[pl] <= '9')
			nl_link_del(de->d_name);
}

static int parse_range(const char *text, uint32_t *base, int *prefix)
{
	char a[32];
	const char *slash = strchr(text, '/');
	if (slash == NULL || (size_t)(slash - text) >= sizeof(a))
		return -1;
	snprintf(a, sizeof(a), "%.*s", (int)(slash - text), text);
	struct in_addr in;
	char *end;
	long p = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, a, &in) != 1 || *end || p < 16 || p > 22)
		return -1;
	*base = ntohl(in.s_addr);
	*prefix = (int)p;
	return in_prefix(*base, *base, 32) && (*base & ~(~0u << (32 - p))) == 0 ? 0 : -1;
}

void ns__egress_init(struct ns_egress *e)
{
	memset(e, 0, sizeof(*e));
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->nft_lock, NULL);
	e->dns_fd = e->dns_tcp_fd = e->upstream_fd = e->wake_fd[0] = e->wake_fd[1] = -1;
	e->hint.mbps = 100;
	e->hint.connections = 256;
}

void ns__egress_open(struct ns_egress *e, const struct sbx_backend_config *cfg, const char *hash)
{
	snprintf(e->table, sizeof(e->table), "bunker_%s", hash);
	snprintf(e->ifprefix, sizeof(e->ifprefix), "bk%.6s", hash);
	const char *range = cfg->egress_net[0] ? cfg->egress_net : "10.213.0.0/16";
	if (parse_range(range, &e->base, &e->prefix) < 0) {
		snprintf(e->why, sizeof(e->why), "range '%s' is not an IPv4 /16../22", range);
		goto off;
	}
	e->n_slots = 1 << (32 - e->prefix - 2);
	e->slots = calloc((size_t)e->n_slots, sizeof(*e->slots));
	e->slot_dirty = calloc((size_t)e->n_slots, sizeof(*e->slot_dirty));
	e->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (e->slots == NULL || e->slot_dirty == NULL || e->nft == NULL) {
		snprintf(e->why, sizeof(e->why), "cannot open nftables");
		goto off;
	}
	nft_ctx_buffer_error(e->nft);
	nft_ctx_buffer_output(e->nft);
	stale_links_remove(e);
	if (ns__dns_start(e, cfg->dns_hosts, cfg->dns_upstream, e->why, sizeof(e->why)) < 0)
		goto off;
	/* Switching forwarding on must not make the host a router for
	 * anything but sessions: when it forwarded nothing before (or did not
	 * before an earlier daemon of ours switched it on, which left a mark),
	 * the table drops what no daemon's interface sends or receives. */
	char fwd[8] = "";
	read_file_small("/proc/sys/net/ipv4/ip_forward", fwd, sizeof(fwd), NULL);
	e->forward_ours_only = fwd[0] != '1' || access(FORWARD_MARK, F_OK) == 0;
	if (e->forward_ours_only && fwd[0] != '1' && mkdir_p("/run/bunker", 0700, NULL) == 0) {
		int fd = open(FORWARD_MARK, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	struct bk_err err = BK_ERR_INIT;
	pthread_mutex_lock(&e->lock);
	int r = nft_table_create_locked(e, &err);
	pthread_mutex_unlock(&e->lock);
	if (r < 0) {
		snprintf(e->why, sizeof(e->why), "%s", err.msg);
		ns__dns_stop(e);
		goto off;
	}
	/* Forwarding is what lets a session's packets out at all; what they
	 * may reach is the table's to say. */
	sysctl_write("/proc/sys/net/ipv4/ip_forward", "1");
	e->ready = true;
	char base[INET_ADDRSTRLEN];
	ip_str(e->base, base);
	fprintf(stderr,
		"bunkerd: egress: sessions' interfaces in %s/%d (%s*), rules in table inet %s, "
		"resolver on ports %d/udp and %d/tcp\n",
		base, e->prefix, e->ifprefix, e->table, e->dns_port, e->dns_tcp_port);
	return;
off:
	ns__dns_stop(e);
	fprintf(stderr, "bunkerd: egress: off, sessions keep loopback only: %s\n", e->why);
}

/* Deletes table (family inet) in a transaction of its own, over
 * nfnetlink: 0 or an errno. libnftables would fetch its cache first and
 * fetch it again for as long as the ruleset's generation changes under
 * it, which with other daemons of the host busy changing theirs went on
 * for minutes and held a stop with it. */
static int nfnl_table_delete(struct ns_egress *e, const char *table)
{
	char buf[1024];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof(buf));
	nfnl_batch_mark(b, NFNL_MSG_BATCH_BEGIN);
	nfnl_put(b, NFT_MSG_DELTABLE, 0, table);
	mnl_nlmsg_batch_next(b);
	nfnl_batch_mark(b, NFNL_MSG_BATCH_END);
	int r = nfnl_batch_send(e, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b));
	mnl_nlmsg_batch_stop(b);
	return r;
}

static int table_seen(const struct nlmsghdr *h, void *data)
{
	bool *ours = data;
	const struct nlattr *a;
	mnl_attr_for_each(a, h, sizeof(struct nfgenmsg))
	{
		if (mnl_attr_get_type(a) == NFTA_TABLE_NAME &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0 &&
		    strncmp(mnl_attr_get_str(a), "bunker_", 7) == 0)
			*ours = true;
	}
	return MNL_CB_OK;
}

/* Whether a table inet bunker_* of any daemon is there, by one dump of
 * the tables' names (no cache, no retry): 1, 0, or -1 when it cannot
 * say. */
static int nfnl_tables_of_ours(void)
{
	struct mnl_socket *sock = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (sock == NULL)
		return -1;
	int fd = mnl_socket_get_fd(sock);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[8192];
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE);
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	h->nlmsg_seq = 1;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
	g->nfgen_family = NFPROTO_INET;
	g->version = NFNETLINK_V0;
	int r = -1;
	bool ours = false;
	if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) == 0 &&
	    mnl_socket_sendto(sock, h, h->nlmsg_len) >= 0) {
		unsigned portid = mnl_socket_get_portid(sock);
		for (;;) {
			ssize_t got = recv(fd, buf, sizeof(buf), 0);
			if (got <= 0)
				break;
			int cb = mnl_cb_run(buf, (size_t)got, 1, portid, table_seen, &ours);
			if (cb <= MNL_CB_STOP) {
				r = cb == MNL_CB_STOP ? ours : -1;
				break;
			}
		}
	}
	mnl_socket_close(sock);
	return r;
}

/* The last daemon of ours to stop puts ip_forward back off when one of
 * ours switched it on (the mark says so): no table of a daemon's is left
 * once its own is deleted. */
static void forward_restore_locked(void)
{
	if (access(FORWARD_MARK, F_OK) != 0 || nfnl_tables_of_ours() != 0)
		return;
	sysctl_write("/proc/sys/net/ipv4/ip_forward", "0");
	unlink(FORWARD_MARK);
}

void ns__egress_close(struct ns_egress *e)
{
	if (e->ready) {
		ns__dns_stop(e);
		pthread_mutex_lock(&e->lock);
		int r = nfnl_table_delete(e, e->table);
		if (r != 0)
			fprintf(stderr, "bunkerd: cannot delete table inet %s: %s\n", e->table,
				strerror(r));
		forward_restore_locked();
		pthread_mutex_unlock(&e->lock);
		stale_links_remove(e);
	}
	if (e->nfnl)
		mnl_socket_close(e->nfnl);
	if (e->ctnl)
		mnl_socket_close(e->ctnl);
	if (e->nft)
		nft_ctx_free(e->nft);
	free(e->slots);
	free(e->slot_dirty);
	free(e->hosts);
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->nft_lock);
}
