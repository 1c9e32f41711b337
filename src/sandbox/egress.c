/* Sessions' outbound network: a veth pair per session granted egress, one
 * nftables table of the daemon's that decides what each may reach, and
 * the conntrack entries of what it may reach no more cut (see
 * egress_int.h). The kernel is spoken to directly: rtnetlink and
 * ctnetlink through libmnl, nftables through libnftables; no ip(8),
 * nft(8) or conntrack(8) runs.
 *
 * One file of about a thousand lines, and not three: the links, the rules
 * and the conntrack cuts are steps of one grant or revoke, each taken
 * under the same lock and keyed by the same slot of the session, and
 * apart they would share every helper and that state through a header.
 * What stands on its own, the resolver, is egress_dns.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if_link.h>
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

/* Runs nft commands (with e->lock held); a failure says nft's message. */
static int nft_run_locked(struct ns_egress *e, const char *cmds, struct bk_err *err)
{
	if (nft_run_cmd_from_buffer(e->nft, cmds) != 0) {
		const char *msg = nft_ctx_get_error_buffer(e->nft);
		return bk_err_kind(err, BK_E_INTERNAL, "nftables refused the rules of %s: %.300s",
				   e->table, msg ? msg : "?");
	}
	return 0;
}

/* The table: who reaches what is decided in one chain per session,
 * reached by a verdict map keyed on the interface; everything else of the
 * backend's interfaces is dropped, IPv6 wholly. */
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
		" map out { type ifname : verdict; }\n"
		" map in { type ifname : verdict; }\n"
		" chain bk_forward { type filter hook forward priority filter - 10; policy "
		"accept;\n"
		"  meta nfproto ipv6 iifname \"%s*\" drop\n"
		"  meta nfproto ipv6 oifname \"%s*\" drop\n"
		"  iifname vmap @out\n"
		"  oifname vmap @in\n"
		"  iifname \"%s*\" drop\n"
		"  oifname \"%s*\" drop\n"
		"%s"
		" }\n"
		" chain bk_input { type filter hook input priority filter - 10; policy accept;\n"
		"  iifname \"%s*\" meta nfproto ipv4 ip daddr %s/%d udp dport %d accept\n"
		"  iifname \"%s*\" meta l4proto tcp reject with tcp reset\n"
		"  iifname \"%s*\" drop\n"
		" }\n"
		" chain bk_pre { type nat hook prerouting priority dstnat; policy accept;\n"
		"  iifname \"%s*\" meta nfproto ipv4 udp dport 53 redirect to :%d\n"
		" }\n"
		" chain bk_post { type nat hook postrouting priority srcnat; policy accept;\n"
		"  meta nfproto ipv4 ip saddr %s/%d oifname != \"%s*\" masquerade\n"
		" }\n"
		"}\n",
		t, t, t, p, p, p, p,
		e->forward_ours_only ? "  iifname != \"bk*\" oifname != \"bk*\" drop\n" : "", p,
		range, e->prefix, e->dns_port, p, p, p, e->dns_port, range, e->prefix, p) < 0)
		return bk_err_set(err, ENOMEM, "cannot build the egress table");
	return nft_run_locked(e, cmds, err);
}

/* Appends to b the rules of n's chains for its policy (the chains and
 * sets exist, and are flushed first). */
static int nft_session_rules(struct ns_egress *e, const struct ns_net *n, bool flush_pins,
			     struct buf *b)
{
	const char *t = e->table;
	int i = n->index;
	char addr[INET_ADDRSTRLEN], range[INET_ADDRSTRLEN];
	ip_str(n->addr, addr);
	ip_str(e->base, range);
	const struct sbx_net *p = &n->policy;
	long kbytes = (long)p->mbps * 125; /* Mbit/s to kB/s */
	long burst = kbytes < 64 ? 64 : kbytes;
	int r = 0;
	r |= bprintf(b, "flush chain inet %s s%d_out\nflush chain inet %s s%d_in\n", t, i, t, i);
	r |= bprintf(b, "flush set inet %s s%d_cidr\n", t, i);
	if (flush_pins)
		r |= bprintf(b, "flush set inet %s s%d_pin\n", t, i);
	const char *rej = "reject with icmpx admin-prohibited";
#define OUT(...) (r |= bprintf(b, "add rule inet %s s%d_out ", t, i), r |= bprintf(b, __VA_ARGS__))
	OUT("ip saddr != %s drop\n", addr);
	OUT("limit rate over %ld kbytes/second burst %ld kbytes drop\n", kbytes, burst);
	OUT("ct state established,related accept\n");
	OUT("ct state != new drop\n");
	OUT("ip daddr { %s } %s\n", always_blocked, rej);
	OUT("ip daddr %s/%d %s\n", range, e->prefix, rej);
	OUT("fib daddr type { local, broadcast, multicast, anycast } %s\n", rej);
	OUT("ct count over %d %s\n", p->connections, rej);
	OUT("ip daddr @s%d_cidr accept\n", i);
	OUT("ip daddr { %s } %s\n", private_ranges, rej);
	OUT("ip daddr @s%d_pin accept\n", i);
	if (p->http)
		OUT("tcp dport 80 accept\n");
	if (p->https)
		OUT("tcp dport 443 accept\n");
	OUT("%s\n", rej);
#undef OUT
	r |= bprintf(
	    b, "add rule inet %s s%d_in limit rate over %ld kbytes/second burst %ld kbytes drop\n",
	    t, i, kbytes, burst);
	r |= bprintf(b, "add rule inet %s s%d_in ct state established,related accept\n", t, i);
	r |= bprintf(b, "add rule inet %s s%d_in drop\n", t, i);
	if (p->n_cidrs) {
		r |= bprintf(b, "add element inet %s s%d_cidr { ", t, i);
		for (size_t c = 0; c < p->n_cidrs; c++) {
			char a[INET_ADDRSTRLEN];
			ip_str(p->cidrs[c].addr, a);
			r |= bprintf(b, "%s%s/%d", c ? ", " : "", a, p->cidrs[c].prefix);
		}
		r |= bprintf(b, " }\n");
	}
	return r ? -1 : 0;
}

static int nft_session_add_locked(struct ns_egress *e, struct ns_net *n, struct bk_err *err)
{
	const char *t = e->table;
	int i = n->index;
	struct buf b;
	buf_init(&b, 1 << 20);
	int r = bprintf(&b,
			"add chain inet %s s%d_out\nadd chain inet %s s%d_in\n"
			"add set inet %s s%d_cidr { type ipv4_addr; flags interval; auto-merge; }\n"
			"add set inet %s s%d_pin { type ipv4_addr; flags timeout; }\n",
			t, i, t, i, t, i, t, i);
	if (r < 0 || nft_session_rules(e, n, false, &b) < 0 ||
	    bprintf(&b,
		    "add element inet %s out { \"%s\" : jump s%d_out }\n"
		    "add element inet %s in { \"%s\" : jump s%d_in }\n",
		    t, n->ifname, i, t, n->ifname, i) < 0) {
		buf_free(&b);
		return bk_err_set(err, ENOMEM, "cannot build the rules of %s", n->ifname);
	}
	r = nft_run_locked(e, b.data, err);
	buf_free(&b);
	return r;
}

static void nft_session_del_locked(struct ns_egress *e, const struct ns_net *n)
{
	char cmds[1024];
	const char *t = e->table;
	int i = n->index;
	snprintf(cmds, sizeof(cmds),
		 "delete element inet %s out { \"%s\" }\n"
		 "delete element inet %s in { \"%s\" }\n"
		 "delete chain inet %s s%d_out\ndelete chain inet %s s%d_in\n"
		 "delete set inet %s s%d_cidr\ndelete set inet %s s%d_pin\n",
		 t, n->ifname, t, n->ifname, t, i, t, i, t, i, t, i);
	struct bk_err err = BK_ERR_INIT;
	if (nft_run_locked(e, cmds, &err) < 0)
		fprintf(stderr, "bunkerd: %s\n", err.msg);
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
 * new connection, and refused. */
static void ct_cut(struct ns_egress *e, const struct ns_net *n, uint32_t addr)
{
	struct mnl_socket *sock = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (sock == NULL || mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		if (sock)
			mnl_socket_close(sock);
		return;
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
		if (in_prefix(dst, p->cidrs[i].addr, p->cidrs[i].prefix))
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(private_v); i++)
		if (in_prefix(dst, private_v[i].addr, private_v[i].prefix))
			return false;
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
	struct buf b;
	buf_init(&b, 1 << 20);
	int r = 0;
	for (size_t k = 0; k < count; k++) {
		uint32_t a = addrs[k];
		if (net_blocked_always(e, a))
			continue;
		char s[INET_ADDRSTRLEN];
		ip_str(a, s);
		/* add (so that it exists), delete, add: the timeout restarts. */
		r |= bprintf(&b,
			     "add element inet %s s%d_pin { %s timeout %us }\n"
			     "delete element inet %s s%d_pin { %s }\n"
			     "add element inet %s s%d_pin { %s timeout %us }\n",
			     e->table, n->index, s, ttl_s, e->table, n->index, s, e->table,
			     n->index, s, ttl_s);
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
	if (r < 0) {
		buf_free(&b);
		return -1;
	}
	struct bk_err err = BK_ERR_INIT;
	r = b.len ? nft_run_locked(e, b.data, &err) : 0;
	if (r < 0)
		fprintf(stderr, "bunkerd: resolver: %s\n", err.msg);
	buf_free(&b);
	return r;
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
	nft_session_del_locked(e, n);
	e->slots[n->index] = NULL;
	s->net = NULL;
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
	struct ns_net *n = s->net;
	if (n) {
		bool same_domains = n->policy.n_domains == net->n_domains &&
				    memcmp(n->policy.domains, net->domains,
					   sizeof(net->domains[0]) * net->n_domains) == 0;
		n->policy = *net;
		if (!same_domains)
			n->n_pins = 0;
		struct buf b;
		buf_init(&b, 1 << 20);
		int r = nft_session_rules(e, n, !same_domains, &b);
		r = r < 0 ? bk_err_set(err, ENOMEM, "cannot build rules")
			  : nft_run_locked(e, b.data, err);
		buf_free(&b);
		uint32_t addr = n->addr;
		if (r == 0)
			ct_cut(e, n, addr);
		pthread_mutex_unlock(&e->lock);
		return r;
	}
	int index = 0;
	for (int i = 1; i < e->n_slots; i++)
		if (e->slots[i] == NULL) {
			index = i;
			break;
		}
	if (index == 0) {
		pthread_mutex_unlock(&e->lock);
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "every address of the sessions' range is taken");
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		pthread_mutex_unlock(&e->lock);
		return bk_err_set(err, ENOMEM, "cannot give session %s a network", base->id);
	}
	n->index = index;
	n->gw = e->base + (uint32_t)index * 4 + 1;
	n->addr = n->gw + 1;
	n->policy = *net;
	snprintf(n->id, sizeof(n->id), "%s", base->id);
	snprintf(n->ifname, sizeof(n->ifname), "%.8s%u", e->ifprefix, (unsigned)(index & 0xffff));
	/* The rules first: the interface never passes a packet unjudged. */
	e->slots[index] = n;
	s->net = n;
	if (nft_session_add_locked(e, n, err) < 0) {
		e->slots[index] = NULL;
		s->net = NULL;
		pthread_mutex_unlock(&e->lock);
		free(n);
		return -1;
	}
	pthread_mutex_unlock(&e->lock);
	/* The interface outside the lock: the resolver goes on meanwhile. */
	if (net_create(s, n, err) < 0) {
		pthread_mutex_lock(&e->lock);
		net_free_locked(e, s);
		pthread_mutex_unlock(&e->lock);
		free(n);
		bk_err_prefix(err, "session %s", base->id);
		return -1;
	}
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
	ct_cut(e, NULL, n->addr);
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
	e->dns_fd = e->upstream_fd = e->wake_fd[0] = e->wake_fd[1] = -1;
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
	e->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (e->slots == NULL || e->nft == NULL) {
		snprintf(e->why, sizeof(e->why), "cannot open nftables");
		goto off;
	}
	nft_ctx_buffer_error(e->nft);
	nft_ctx_buffer_output(e->nft);
	stale_links_remove(e);
	if (ns__dns_start(e, cfg->dns_hosts, e->why, sizeof(e->why)) < 0)
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
		"resolver on port %d\n",
		base, e->prefix, e->ifprefix, e->table, e->dns_port);
	return;
off:
	ns__dns_stop(e);
	fprintf(stderr, "bunkerd: egress: off, sessions keep loopback only: %s\n", e->why);
}

/* The last daemon of ours to stop puts ip_forward back off when one of
 * ours switched it on (the mark says so): no table of a daemon's is left
 * once its own is deleted. */
static void forward_restore_locked(struct ns_egress *e)
{
	if (access(FORWARD_MARK, F_OK) != 0 ||
	    nft_run_cmd_from_buffer(e->nft, "list tables inet\n") != 0)
		return;
	const char *out = nft_ctx_get_output_buffer(e->nft);
	if (out != NULL && strstr(out, "table inet bunker_") != NULL)
		return;
	sysctl_write("/proc/sys/net/ipv4/ip_forward", "0");
	unlink(FORWARD_MARK);
}

void ns__egress_close(struct ns_egress *e)
{
	if (e->ready) {
		ns__dns_stop(e);
		pthread_mutex_lock(&e->lock);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "delete table inet %s\n", e->table);
		struct bk_err err = BK_ERR_INIT;
		if (nft_run_locked(e, cmd, &err) < 0)
			fprintf(stderr, "bunkerd: %s\n", err.msg);
		forward_restore_locked(e);
		pthread_mutex_unlock(&e->lock);
		stale_links_remove(e);
	}
	if (e->nft)
		nft_ctx_free(e->nft);
	free(e->slots);
	free(e->hosts);
	pthread_mutex_destroy(&e->lock);
}
