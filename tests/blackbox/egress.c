/* Outbound network per session: off by default, granted and revoked by
 * policy at runtime, names through the session's resolver, the
 * always-blocked destinations blocked under every policy, the package
 * registry, plans without egress, and nothing left on the host.
 *
 * Network safety: every destination a test reaches is an address this
 * binary assigns itself in a network namespace of its own ("bkt<pid>"),
 * reached through a veth and host routes to it, with no default route in
 * it and servers bound to 0.0.0.0 that look nothing up; the only traffic
 * that may leave the machine is to the npm registry, and only in the test
 * that installs from it. Test names are answered by the daemon's resolver
 * from its --dns-hosts file and never forwarded. The namespace, the veth
 * (with its routes) and ip_forward are put back in harness_teardown(). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../client.h"

static char netns[32], host_if[16], hosts_file[] = "/tmp/bk-egress-hosts-XXXXXX";
static char ip_forward_before[8];
/* A daemon of ours switched ip_forward on and recorded that it had been
 * off (sandbox/egress.c): the host forwarded nothing of its own. */
static bool forward_mark_before;
static pid_t server_pid, dns_server_pid;
static int host_port; /* a server of the test's on the host itself, 0.0.0.0 */
static pid_t host_server_pid;

/* The test namespace's addresses: a "public" one granted by CIDR, one
 * granted by name, one never granted, the metadata address, a private
 * one. */
#define SRV_GRANTED "198.51.100.2"
#define SRV_NAMED "198.51.100.3"
#define SRV_OTHER "198.51.100.4"
#define SRV_HOST_SIDE "198.51.100.1"
#define SRV_METADATA "169.254.169.254"
#define SRV_PRIVATE "10.99.7.2"

#define STR(x) #x
#define XSTR(x) STR(x)

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What the server sends on port 8002 before it closes. */
#define BULK_BYTES 3000000

/* A server that answers every connection on ports 80 and 8000 with the
 * address it was reached at, streams a byte every 50 ms on 8001, and
 * sends BULK_BYTES on 8002. */
static const char server_py[] =
    "import socket,threading,time\n"
    "def serve(port,mode):\n"
    "  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "  s.bind(('0.0.0.0',port)); s.listen(64)\n"
    "  while True:\n"
    "    c,_=s.accept()\n"
    "    threading.Thread(target=h,args=(c,mode),daemon=True).start()\n"
    "def h(c,mode):\n"
    "  try:\n"
    "    if mode=='stream':\n"
    "      while True: c.sendall(b'x'); time.sleep(0.05)\n"
    "    if mode=='bulk':\n"
    "      c.sendall(b'x'*" XSTR(
	BULK_BYTES) "); c.close(); return\n"
		    "    c.sendall(('hello ' + c.getsockname()[0] + '\\n').encode()); c.close()\n"
		    "  except Exception: pass\n"
		    "for p,m in ((80,''),(8000,''),(8001,'stream'),(8002,'bulk')):\n"
		    "  threading.Thread(target=serve,args=(p,m),daemon=True).start()\n"
		    "while True: time.sleep(60)\n";

/* The upstream nameserver of one test's daemon (--dns-upstream), on port
 * 53 of the namespace's addresses, UDP and TCP: big.bunker.test has
 * DNS_BIG_COUNT A records, 198.51.100.100 on, with SRV_OTHER at index
 * DNS_BIG_OTHER_AT. Over UDP an answer is cut to 512 bytes with TC set
 * (the question has no EDNS), so those records start past the cut; over
 * TCP it is whole. Every other name is NXDOMAIN; it looks nothing up. */
#define DNS_BIG_COUNT 100
#define DNS_BIG_OTHER_AT 29
static const char dns_server_py[] =
    "import socket,struct,threading\n"
    "A=['198.51.100.%d'%(100+i) for i in range(" XSTR(
	DNS_BIG_COUNT) ")]\n"
		       "A[" XSTR(
			   DNS_BIG_OTHER_AT) "]='" SRV_OTHER "'\n"
					     "def answer(q,limit):\n"
					     "  qid,fl=struct.unpack('>HH',q[:4]); i=12; ls=[]\n"
					     "  while q[i]: "
					     "ls.append(q[i+1:i+1+q[i]].decode().lower()); "
					     "i+=1+q[i]\n"
					     "  qtype=struct.unpack('>H',q[i+1:i+3])[0]; qend=i+5; "
					     "big='.'.join(ls)=='big.bunker.test'\n"
					     "  "
					     "rs=[b'\\xc0\\x0c'+struct.pack('>HHIH',1,1,300,4)+"
					     "socket.inet_aton(a) for a in A]"
					     " if big and qtype==1 else []\n"
					     "  tc=0\n"
					     "  if limit and qend+16*len(rs)>limit: "
					     "rs=rs[:(limit-qend)//16]; tc=1\n"
					     "  f=0x8080|(fl&0x0100)|(tc<<9)|(0 if big else 3)\n"
					     "  return "
					     "struct.pack('>HHHHHH',qid,f,1,len(rs),0,0)+q[12:qend]"
					     "+b''.join(rs)\n"
					     "def udp():\n"
					     "  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
					     "s.bind(('0.0.0.0',53))\n"
					     "  while True:\n"
					     "    q,a=s.recvfrom(4096)\n"
					     "    try: s.sendto(answer(q,512),a)\n"
					     "    except Exception: pass\n"
					     "def recvn(c,n):\n"
					     "  b=b''\n"
					     "  while len(b)<n:\n"
					     "    d=c.recv(n-len(b))\n"
					     "    if not d: raise EOFError()\n"
					     "    b+=d\n"
					     "  return b\n"
					     "def conn(c):\n"
					     "  try:\n"
					     "    while True:\n"
					     "      q=recvn(c,struct.unpack('>H',recvn(c,2))[0]); "
					     "r=answer(q,0)\n"
					     "      c.sendall(struct.pack('>H',len(r))+r)\n"
					     "  except Exception: pass\n"
					     "  finally: c.close()\n"
					     "threading.Thread(target=udp,daemon=True).start()\n"
					     "t=socket.socket(); "
					     "t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)"
					     "\n"
					     "t.bind(('0.0.0.0',53)); t.listen(16)\n"
					     "while True:\n"
					     "  c,_=t.accept(); "
					     "threading.Thread(target=conn,args=(c,),daemon=True)."
					     "start()\n";

static pid_t spawn_server(const char *ns, const char *code)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (ns)
			execlp("ip", "ip", "netns", "exec", ns, "python3", "-c", code,
			       (char *)NULL);
		else
			execlp("python3", "python3", "-c", code, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void net_teardown(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
	if (dns_server_pid > 0) {
		kill(dns_server_pid, SIGKILL);
		waitpid(dns_server_pid, NULL, 0);
		dns_server_pid = 0;
	}
	if (host_server_pid > 0) {
		kill(host_server_pid, SIGKILL);
		waitpid(host_server_pid, NULL, 0);
		host_server_pid = 0;
	}
	if (host_if[0])
		sh("ip link del %s 2>/dev/null", host_if);
	if (netns[0])
		sh("ip netns del %s 2>/dev/null", netns);
	if (ip_forward_before[0]) {
		FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "w");
		if (f) {
			fputs(ip_forward_before, f);
			fclose(f);
		}
	}
	unlink(hosts_file);
}

static int net_setup(void)
{
	forward_mark_before = access("/run/bunker/ip_forward-was-off", F_OK) == 0;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "r");
	if (f) {
		if (fgets(ip_forward_before, sizeof(ip_forward_before), f) == NULL)
			ip_forward_before[0] = '\0';
		fclose(f);
	}
	snprintf(netns, sizeof(netns), "bkt%d", (int)getpid());
	snprintf(host_if, sizeof(host_if), "bkth%d", (int)getpid() % 100000);
	/* The ranges must be nobody's on this machine: refused otherwise
	 * (10.214.0.0/16, the second daemon's of one test, is that test's
	 * to check). */
	if (sh("ip route | grep -qE "
	       "'^(198\\.51\\.100\\.|10\\.99\\.7\\.|169\\.254\\.169\\.254|10\\.213\\.)"
	       "'") == 0) {
		fprintf(stderr, "egress: a test range is in use on this machine\n");
		return -1;
	}
	if (sh("ip netns add %s", netns) != 0 ||
	    sh("ip link add %s type veth peer name eth0 netns %s", host_if, netns) != 0 ||
	    sh("ip addr add " SRV_HOST_SIDE "/24 dev %s && ip link set %s up", host_if, host_if) !=
		0 ||
	    sh("ip -n %s link set lo up && ip -n %s link set eth0 up", netns, netns) != 0 ||
	    sh("ip -n %s addr add " SRV_GRANTED "/24 dev eth0 && ip -n %s addr add " SRV_NAMED
	       "/24 dev eth0 && ip -n %s addr add " SRV_OTHER "/24 dev eth0",
	       netns, netns, netns) != 0 ||
	    sh("ip -n %s addr add " SRV_METADATA "/32 dev eth0 && ip -n %s addr add " SRV_PRIVATE
	       "/24 dev eth0",
	       netns, netns) != 0 ||
	    /* The host reaches them through the veth; the namespace answers
	     * the host end only, over its connected /24. */
	    sh("ip route add " SRV_METADATA "/32 dev %s && ip route add 10.99.7.0/24 dev %s",
	       host_if, host_if) != 0 ||
	    sh("ip -n %s route add " SRV_HOST_SIDE "/32 dev eth0 2>/dev/null; true", netns) != 0)
		return -1;
	/* Every test destination must be reached through the veth. */
	if (sh("ip route get " SRV_METADATA " | grep -q 'dev %s' && ip route get " SRV_PRIVATE
	       " | grep -q 'dev %s' && ip route get " SRV_GRANTED " | grep -q 'dev %s'",
	       host_if, host_if, host_if) != 0)
		return -1;
	server_pid = spawn_server(netns, server_py);
	dns_server_pid = spawn_server(netns, dns_server_py);
	host_port = 20000 + (int)(getpid() % 20000);
	char host_code[512];
	snprintf(host_code, sizeof(host_code),
		 "import socket\ns=socket.socket(); "
		 "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
		 "s.bind(('0.0.0.0',%d)); s.listen(64)\n"
		 "while True:\n  c,_=s.accept(); c.sendall(b'hello host\\n'); c.close()\n",
		 host_port);
	host_server_pid = spawn_server(NULL, host_code);
	int fd = mkstemp(hosts_file);
	if (fd < 0)
		return -1;
	dprintf(fd,
		"# test names: answered by bunkerd's resolver itself, never forwarded\n" SRV_NAMED
		" granted.bunker.test\n" SRV_OTHER " other.bunker.test\n" SRV_METADATA
		" rebind.bunker.test\n" SRV_GRANTED " sub.wild.bunker.test\n");
	close(fd);
	client_manifest_note("dir", hosts_file, NULL);
	usleep(500 * 1000);
	return 0;
}

int harness_setup(void)
{
	if (geteuid() != 0)
		return client_fixture_start();
	if (net_setup() < 0) {
		net_teardown();
		return 1;
	}
	const char *const args[] = {"--dns-hosts", hosts_file, NULL};
	return client_fixture_start_args(args);
}

void harness_teardown(void)
{
	client_fixture_stop();
	net_teardown();
}

int harness_final_check(void)
{
	return client_fixture_check();
}

/* ---- helpers ---- */

/* What a connection from inside the session to host:port gets: "hello
 * <addr>" or "FAIL <why>". */
static const char probe_py[] = "import socket,sys\n"
			       "h,p=sys.argv[1],int(sys.argv[2])\n"
			       "try:\n"
			       "  a=socket.gethostbyname(h)\n"
			       "  s=socket.create_connection((a,p),timeout=2); s.settimeout(2)\n"
			       "  print(s.recv(100).decode().strip() or 'FAIL empty')\n"
			       "except Exception as e: print('FAIL',type(e).__name__,e)\n";

/* DNS over TCP from inside the session: every name of argv[2:] asked on
 * one connection to argv[1]:53, all sent before any answer is read
 * (pipelined); prints "name:rcode:address" for each ("-": no address),
 * or "FAIL <why>". */
static const char dnstcp_py[] =
    "import socket,struct,sys\n"
    "def query(i,name):\n"
    "  m=struct.pack('>HHHHHH',i,0x0100,1,0,0,0)\n"
    "  for l in name.split('.'): m+=bytes([len(l)])+l.encode()\n"
    "  m+=b'\\0'+struct.pack('>HH',1,1)\n"
    "  return struct.pack('>H',len(m))+m\n"
    "def recvn(s,n):\n"
    "  b=b''\n"
    "  while len(b)<n:\n"
    "    d=s.recv(n-len(b))\n"
    "    if not d: raise EOFError('closed')\n"
    "    b+=d\n"
    "  return b\n"
    "def answer(s):\n"
    "  r=recvn(s,struct.unpack('>H',recvn(s,2))[0])\n"
    "  i,fl,qd,an=struct.unpack('>HHHH',r[:8])\n"
    "  return i,fl&15,('.'.join(map(str,r[-4:])) if an else '-')\n"
    "def main():\n"
    "  names=sys.argv[2:]\n"
    "  s=socket.create_connection((sys.argv[1],53),timeout=3)\n"
    "  s.sendall(b''.join(query(k+1,n) for k,n in enumerate(names)))\n"
    "  got={}\n"
    "  for _ in names:\n"
    "    i,rc,a=answer(s); got[i]='%d:%s'%(rc,a)\n"
    "  print(' '.join('%s:%s'%(n,got.get(k+1,'?')) for k,n in enumerate(names)))\n"
    "if __name__=='__main__':\n"
    "  try: main()\n"
    "  except Exception as e: print('FAIL',type(e).__name__,e)\n";

static char *session_with(const char *key, const char *network_json)
{
	char body[2048];
	if (network_json)
		snprintf(body, sizeof(body), "{\"network\":%s}", network_json);
	else
		snprintf(body, sizeof(body), "{}");
	char *id = client_must_create(key, body);
	json_t *files = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "files", "path", "probe.py",
				  "content", probe_py, "path", "dnstcp.py", "content", dnstcp_py);
	struct client_resp r;
	client_must_exec(key, id, "true", files, &r);
	client_resp_free(&r);
	json_decref(files);
	return id;
}

/* The probe's answer (caller frees). */
static char *probe(const char *key, const char *id, const char *host, int port)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "python3 /workspace/probe.py %s %d", host, port);
	char *out = client_must_run(key, id, cmd);
	size_t n = strlen(out);
	while (n && out[n - 1] == '\n')
		out[--n] = '\0';
	return out;
}

#define CHECK_REACHES(key, id, host, port)                                                         \
	do {                                                                                       \
		char *_o = probe(key, id, host, port);                                             \
		CHECK_MSG(strncmp(_o, "hello", 5) == 0, "%s:%d not reached: %s", host, port, _o);  \
		free(_o);                                                                          \
	} while (0)
#define CHECK_BLOCKED(key, id, host, port)                                                         \
	do {                                                                                       \
		char *_o = probe(key, id, host, port);                                             \
		CHECK_MSG(strncmp(_o, "FAIL", 4) == 0, "%s:%d reached: %s", host, port, _o);       \
		free(_o);                                                                          \
	} while (0)

static void set_network(const char *key, const char *id, const char *json, long want)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s/network", id);
	struct client_resp r;
	client_call(&bk.d, "PATCH", path, key, json, &r);
	CHECK_STATUS(&r, want);
	client_resp_free(&r);
}

static void need_root(void)
{
	if (geteuid() != 0)
		SKIP("egress needs root (network namespaces, nftables)");
}

/* For a test that starts a daemon of its own on sessions' range
 * 10.<second>.0.0/16: skips when something of this machine's uses it
 * (another engineer's daemon, say). */
static void need_range(int second)
{
	if (sh("ip route | grep -q '^10\\.%d\\.'", second) == 0)
		SKIP("10.%d.0.0/16 is in use on this machine", second);
}

/* Creates a session granted SRV_GRANTED on daemon d; its id into id. */
static void create_granted_on(const struct client_daemon *d, const char *key, char *id, size_t len)
{
	struct client_resp r;
	client_call(d, "POST", "/sessions/create", key,
		    "{\"network\":{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}}", &r);
	CHECK_STATUS(&r, 200);
	snprintf(id, len, "%s", client_must_str(r.json, "sessionId", r.body));
	client_resp_free(&r);
}

/* ---- tests ---- */

/* Without a policy a session has loopback only, costs no interface on
 * the host, and its policy reads as deny-all. */
TEST(default_is_loopback_only)
{
	need_root();
	char *id = session_with(bk.paid_key, NULL);
	char *links = client_must_run(bk.paid_key, id, "ls /sys/class/net");
	CHECK_STR_EQ(links, "lo\n");
	free(links);
	CHECK_BLOCKED(bk.paid_key, id, SRV_GRANTED, 8000);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s/network", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_is_false(json_object_get(r.json, "allowHttps")));
	CHECK(json_array_size(json_object_get(r.json, "allowedCidrs")) == 0);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* A CIDR granted at create reaches the test server; another address of
 * the same namespace stays shut; a revoke cuts at once, an open
 * connection included; a grant at runtime opens without a restart. */
TEST_TIMEOUT(cidr_grant_and_revoke, 90)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedCidrs\":[\"" SRV_GRANTED "/32\"]}");
	char *links = client_must_run(bk.paid_key, id, "ls /sys/class/net | tr '\\n' ' '");
	CHECK_STR_EQ(links, "eth0 lo ");
	free(links);
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	CHECK_BLOCKED(bk.paid_key, id, SRV_OTHER, 8000);
	/* An open connection, counting what it receives, then the revoke
	 * (the policy keeps granting another address, so the interface
	 * stays: the cut is the rules' and conntrack's). */
	char *o = client_must_run(
	    bk.paid_key, id,
	    "nohup python3 -c \"\nimport socket,time\ns=socket.create_connection(('" SRV_GRANTED
	    "',8001)); s.settimeout(0.5); n=0\nwhile True:\n  try:\n    d=s.recv(100)\n    if not "
	    "d: "
	    "break\n    n+=len(d)\n  except socket.timeout: pass\n  except Exception: break\n"
	    "  open('/tmp/n','w').write(str(n))\n\" >/dev/null 2>&1 & sleep 1; cat /tmp/n");
	CHECK_MSG(atoi(o) > 0, "the stream sent nothing: '%s'", o);
	free(o);
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[\"" SRV_OTHER "/32\"]}", 200);
	o = client_must_run(
	    bk.paid_key, id,
	    "sleep 0.5; a=$(cat /tmp/n); sleep 1.5; b=$(cat /tmp/n); echo $((b-a))");
	CHECK_MSG(atoi(o) == 0, "%s bytes arrived after the revoke", o);
	free(o);
	CHECK_BLOCKED(bk.paid_key, id, SRV_GRANTED, 8000);
	CHECK_REACHES(bk.paid_key, id, SRV_OTHER, 8000);
	/* Everything revoked: the interface goes. */
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[]}", 200);
	links = client_must_run(bk.paid_key, id, "ls /sys/class/net");
	CHECK_STR_EQ(links, "lo\n");
	free(links);
	/* And back, at runtime. */
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}", 200);
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* CIDRs that overlap, nest or touch are one run of addresses in the
 * kernel's interval set, which the daemon merges itself (nothing of
 * nft's auto-merge runs): .2/31 with .2/32 and .3/32 inside it and .4/32
 * beside it open .2, .3 and .4; a grant of .4 alone then shuts .2
 * again (the set was flushed, not added to). */
TEST_TIMEOUT(overlapping_cidrs_merged, 90)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedCidrs\":[\"198.51.100.3/32\","
					     "\"198.51.100.2/31\",\"" SRV_GRANTED
					     "/32\",\"" SRV_OTHER "/32\"]}");
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	CHECK_REACHES(bk.paid_key, id, SRV_NAMED, 8000);
	CHECK_REACHES(bk.paid_key, id, SRV_OTHER, 8000);
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[\"" SRV_OTHER "/32\"]}", 200);
	CHECK_BLOCKED(bk.paid_key, id, SRV_GRANTED, 8000);
	CHECK_REACHES(bk.paid_key, id, SRV_OTHER, 8000);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* The warm pool prepares its networks with the last grant's CIDRs and
 * web ports, so that a create with the same policy writes nothing: a
 * create with another policy must find only its own open. Each create
 * below follows a pause in which the pool makes its next network with the
 * hint of the create before. */
TEST_TIMEOUT(a_prepared_network_holds_only_the_new_policy, 120)
{
	need_root();
	const char *first = "{\"allowedCidrs\":[\"" SRV_OTHER "/32\"],\"allowHttp\":true}";
	char *a = session_with(bk.paid_key, first);
	usleep(1500 * 1000);
	/* Another CIDR, no web ports: the first's are shut. */
	char *b = session_with(bk.paid_key, "{\"allowedCidrs\":[\"" SRV_GRANTED "/32\"]}");
	CHECK_REACHES(bk.paid_key, b, SRV_GRANTED, 8000);
	CHECK_BLOCKED(bk.paid_key, b, SRV_OTHER, 8000);
	CHECK_BLOCKED(bk.paid_key, b, SRV_NAMED, 80);
	/* The first's policy again, twice: the second of them finds its
	 * network prepared with it, and everything of it open. */
	char *c = session_with(bk.paid_key, first);
	usleep(1500 * 1000);
	char *d = session_with(bk.paid_key, first);
	CHECK_REACHES(bk.paid_key, d, SRV_OTHER, 8000);
	CHECK_REACHES(bk.paid_key, d, SRV_NAMED, 80);
	CHECK_BLOCKED(bk.paid_key, d, SRV_GRANTED, 8000);
	usleep(1500 * 1000);
	/* Names only: no CIDR, no port of the hint's is open. */
	char *e = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\"]}");
	CHECK_BLOCKED(bk.paid_key, e, SRV_OTHER, 8000);
	CHECK_BLOCKED(bk.paid_key, e, SRV_NAMED, 80);
	CHECK_REACHES(bk.paid_key, e, "granted.bunker.test", 8000);
	char *ids[] = {a, b, c, d, e};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		client_must_delete(bk.paid_key, ids[i]);
		free(ids[i]);
	}
	/* The web ports of every session are in one set of the table, keyed
	 * by the session's address: the deleted ones left none there (the
	 * pool's prepared networks hold the last grant's, which has none). */
	CHECK_MSG(sh("for t in $(nft list tables | awk '/ bunker_/{print $3}'); do "
		     "nft list set inet $t web | grep -q elements && exit 1; done; exit 0") == 0,
		  "a deleted session's web ports are still in the set web");
}

/* Names through the session's resolver: an allowed name resolves and its
 * address opens (pinned), a name not allowed is refused, an address never
 * resolved stays shut, a wildcard covers the names below it, and an
 * allowed name that resolves to the metadata address opens nothing. */
TEST(domain_allow_via_resolver)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\","
					     "\"rebind.bunker.test\",\"*.wild.bunker.test\"]}");
	CHECK_BLOCKED(bk.paid_key, id, SRV_NAMED, 8000); /* not asked for yet */
	CHECK_REACHES(bk.paid_key, id, "granted.bunker.test", 8000);
	CHECK_REACHES(bk.paid_key, id, SRV_NAMED, 8000); /* pinned now */
	CHECK_REACHES(bk.paid_key, id, "sub.wild.bunker.test", 8000);
	char *o = probe(bk.paid_key, id, "other.bunker.test", 8000);
	CHECK_MSG(strstr(o, "gaierror") != NULL, "a name not allowed resolved: %s", o);
	free(o);
	CHECK_BLOCKED(bk.paid_key, id, SRV_OTHER, 8000);
	CHECK_BLOCKED(bk.paid_key, id, "rebind.bunker.test", 80);
	/* Taking the name away closes its address to new connections. */
	set_network(bk.paid_key, id, "{\"allowedDomains\":[\"rebind.bunker.test\"]}", 200);
	CHECK_BLOCKED(bk.paid_key, id, SRV_NAMED, 8000);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* What the session's DNS over TCP to server gets (caller frees). */
static char *dns_tcp(const char *key, const char *id, const char *server, const char *names)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "python3 /workspace/dnstcp.py %s %s", server, names);
	char *out = client_must_run(key, id, cmd);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* The session's gateway, as its default route says (caller frees). */
static char *session_gateway(const char *key, const char *id)
{
	return client_must_run(key, id,
			       "ip -4 route show default | awk '{print $3}' | tr -d '\\n'");
}

/* DNS over TCP, to the address of the session's resolv.conf and to its
 * gateway: an allowed test name is answered, its address is pinned open
 * by that answer alone (nothing asked over UDP), and several queries on
 * one connection are each answered. TCP port 53 of any other address is
 * not the resolver: another session's gateway and a test server are
 * refused like any port the policy does not open. */
TEST(dns_over_tcp_answers_and_pins)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\","
					     "\"*.wild.bunker.test\"]}");
	char *other = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\"]}");
	CHECK_BLOCKED(bk.paid_key, id, SRV_NAMED, 8000); /* not asked for yet */
	char *o = dns_tcp(bk.paid_key, id, "10.213.0.1", "granted.bunker.test");
	CHECK_STR_EQ(o, "granted.bunker.test:0:" SRV_NAMED);
	free(o);
	CHECK_REACHES(bk.paid_key, id, SRV_NAMED, 8000); /* pinned by the TCP answer */
	char *gw = session_gateway(bk.paid_key, id);
	o = dns_tcp(bk.paid_key, id, gw, "sub.wild.bunker.test granted.bunker.test");
	CHECK_STR_EQ(o, "sub.wild.bunker.test:0:" SRV_GRANTED " granted.bunker.test:0:" SRV_NAMED);
	free(o);
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	/* Port 53 of addresses that are not this session's resolver. */
	char *other_gw = session_gateway(bk.paid_key, other);
	CHECK_MSG(strcmp(gw, other_gw) != 0, "two sessions share gateway %s", gw);
	o = dns_tcp(bk.paid_key, id, other_gw, "granted.bunker.test");
	CHECK_MSG(strncmp(o, "FAIL", 4) == 0, "another session's gateway answered: %s", o);
	free(o);
	o = dns_tcp(bk.paid_key, id, SRV_OTHER, "granted.bunker.test");
	CHECK_MSG(strncmp(o, "FAIL", 4) == 0, "TCP 53 of a test server was answered: %s", o);
	free(o);
	free(gw);
	free(other_gw);
	client_must_delete(bk.paid_key, other);
	free(other);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* Over TCP as over UDP, a name the policy does not allow is REFUSED and
 * opens nothing, on a connection that answers an allowed name next. */
TEST(dns_over_tcp_refuses_denied_names)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\"]}");
	char *o = dns_tcp(bk.paid_key, id, "10.213.0.1", "other.bunker.test granted.bunker.test");
	CHECK_STR_EQ(o, "other.bunker.test:5:- granted.bunker.test:0:" SRV_NAMED);
	free(o);
	CHECK_BLOCKED(bk.paid_key, id, SRV_OTHER, 8000);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* A hostile session sends lengths no query has (each closes its
 * connection at once), opens more TCP connections to the resolver than
 * there are slots in all, and holds those it gets with a length that
 * announces a message it never sends: it is served on
 * DNS_TCP_PER_SESSION (4) connections only, and another session resolves
 * over TCP and UDP while they are held. */
TEST_TIMEOUT(dns_over_tcp_hostile_session_bounded, 90)
{
	need_root();
	char *hostile = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\"]}");
	char *victim = session_with(bk.paid_key, "{\"allowedDomains\":[\"granted.bunker.test\"]}");
	/* Lengths 0, 5 and 65535 (no query is shorter than 12 bytes or
	 * longer than 4096), each on a connection of its own; then 80
	 * connections (more than the 64 of every session), a query on each:
	 * those answered stay, stalled in a message of 4096 bytes that never
	 * comes whole. */
	char *o = client_must_run(
	    bk.paid_key, hostile,
	    "nohup python3 -c \"\n"
	    "import socket,struct,sys\n"
	    "sys.path.insert(0,'/workspace')\n"
	    "from dnstcp import query,answer\n"
	    "junk=0\n"
	    "for j in (b'\\\\0\\\\0',b'\\\\0\\\\5hello',b'\\\\xff\\\\xff'+b'x'*100):\n"
	    "  c=socket.create_connection(('10.213.0.1',53),timeout=3); c.sendall(j)\n"
	    "  try: junk+=c.recv(10)==b''\n"
	    "  except ConnectionResetError: junk+=1\n"
	    "  except socket.timeout: pass\n"
	    "cs=[]\n"
	    "for i in range(80):\n"
	    "  try: cs.append(socket.create_connection(('10.213.0.1',53),timeout=3))\n"
	    "  except Exception as e: print(i,repr(e),flush=True)\n"
	    "kept=[]\n"
	    "for c in cs:\n"
	    "  try:\n"
	    "    c.sendall(query(7,'granted.bunker.test')); answer(c); kept.append(c)\n"
	    "  except Exception: pass\n"
	    "for c in kept: c.sendall(b'\\\\x10\\\\0'+b'x'*100)\n"
	    "open('/tmp/h.tmp','w').write('%d %d %d'%(len(cs),len(kept),junk))\n"
	    "import os,time; os.rename('/tmp/h.tmp','/tmp/h'); time.sleep(60)\n"
	    "\" >/tmp/h.log 2>&1 & "
	    "for i in $(seq 1 300); do [ -s /tmp/h ] && break; sleep 0.1; done; cat /tmp/h; head "
	    "-c 600 /tmp/h.log");
	CHECK_MSG(strcmp(o, "80 4 3") == 0,
		  "hostile session: connections, served, junk closed = '%s' (want '80 4 3')", o);
	free(o);
	/* The hostile session's four stalled connections are still held. */
	o = dns_tcp(bk.paid_key, victim, "10.213.0.1", "granted.bunker.test");
	CHECK_STR_EQ(o, "granted.bunker.test:0:" SRV_NAMED);
	free(o);
	CHECK_REACHES(bk.paid_key, victim, "granted.bunker.test", 8000);
	client_must_delete(bk.paid_key, hostile);
	free(hostile);
	client_must_delete(bk.paid_key, victim);
	free(victim);
}

/* The host's own addresses (a server of the test's on all of them, and
 * bunkerd's port), another session, the metadata address and link-local
 * are blocked under every policy, one that names them all included; a
 * private range opens only when a CIDR names it. */
TEST_TIMEOUT(always_blocked_under_every_policy, 180)
{
	need_root();
	char *other = session_with(bk.paid_key, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}");
	char *addr = client_must_run(
	    bk.paid_key, other,
	    "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1 | tr -d '\\n'; "
	    "nohup python3 -c \"import socket\ns=socket.socket(); s.bind(('0.0.0.0',9000)); "
	    "s.listen(8)\nwhile True:\n  c,_=s.accept(); c.sendall(b'hello session\\n'); "
	    "c.close()\" "
	    ">/dev/null 2>&1 &");
	char host_eth[64] = "";
	FILE *p =
	    popen("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'", "r");
	if (p) {
		if (fgets(host_eth, sizeof(host_eth), p) == NULL)
			host_eth[0] = '\0';
		host_eth[strcspn(host_eth, "\n")] = '\0';
		pclose(p);
	}
	const char *policies[] = {
	    "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}",
	    "{\"allowHttp\":true,\"allowHttps\":true}",
	    "{\"allowPackageManagers\":true,\"allowedDomains\":[\"rebind.bunker.test\"]}",
	    /* Every blocked destination named, and the whole of IPv4. */
	    "{\"allowHttp\":true,\"allowedCidrs\":[\"0.0.0.0/0\",\"169.254.0.0/16\","
	    "\"" SRV_METADATA "/32\",\"10.213.0.0/16\",\"" SRV_HOST_SIDE "/32\",\"127.0.0.0/8\","
	    "\"224.0.0.0/4\",\"10.99.7.0/24\"]}",
	};
	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
		char *id = session_with(bk.paid_key, policies[i]);
		bool named = strstr(policies[i], "10.99.7.0/24") != NULL;
		CHECK_BLOCKED(bk.paid_key, id, SRV_METADATA, 80);
		CHECK_BLOCKED(bk.paid_key, id, "rebind.bunker.test", 80);
		CHECK_BLOCKED(bk.paid_key, id, "169.254.1.1", 80);
		CHECK_BLOCKED(bk.paid_key, id, SRV_HOST_SIDE, host_port);
		CHECK_BLOCKED(bk.paid_key, id, SRV_HOST_SIDE, bk.d.port);
		if (host_eth[0]) {
			CHECK_BLOCKED(bk.paid_key, id, host_eth, host_port);
			CHECK_BLOCKED(bk.paid_key, id, host_eth, bk.d.port);
		}
		/* The session's gateway is the host too. */
		CHECK_BLOCKED(bk.paid_key, id, "10.213.0.1", host_port);
		char *gw = client_must_run(
		    bk.paid_key, id, "ip -4 route show default | awk '{print $3}' | tr -d '\\n'");
		if (gw[0])
			CHECK_BLOCKED(bk.paid_key, id, gw, bk.d.port);
		free(gw);
		CHECK_BLOCKED(bk.paid_key, id, addr, 9000);
		if (named)
			CHECK_REACHES(bk.paid_key, id, SRV_PRIVATE, 80);
		else
			CHECK_BLOCKED(bk.paid_key, id, SRV_PRIVATE, 80);
		client_must_delete(bk.paid_key, id);
		free(id);
	}
	free(addr);
	client_must_delete(bk.paid_key, other);
	free(other);
}

/* A CIDR wider than a private range (0.0.0.0/0, the whole of IPv4)
 * opens the public addresses it covers and no private one: only a CIDR
 * inside a private range opens it. */
TEST(wide_cidr_opens_no_private_range)
{
	need_root();
	char *id = session_with(bk.paid_key, "{\"allowedCidrs\":[\"0.0.0.0/0\"]}");
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	CHECK_BLOCKED(bk.paid_key, id, SRV_PRIVATE, 80);
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[\"0.0.0.0/0\",\"10.99.7.0/24\"]}", 200);
	CHECK_REACHES(bk.paid_key, id, SRV_PRIVATE, 80);
	set_network(bk.paid_key, id, "{\"allowedCidrs\":[\"10.0.0.0/7\"]}", 200);
	CHECK_BLOCKED(bk.paid_key, id, SRV_PRIVATE, 80);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* The InstaVM endpoints speak the same policy. */
TEST(instavm_egress_endpoints)
{
	need_root();
	char body[512];
	snprintf(body, sizeof(body), "{\"api_key\":\"%s\"}", bk.paid_key);
	struct client_resp r;
	client_call(&bk.d, "POST", "/v1/sessions/session", NULL, body, &r);
	CHECK_STATUS(&r, 200);
	char id[64];
	snprintf(id, sizeof(id), "%s", client_must_str(r.json, "session_id", r.body));
	client_resp_free(&r);
	char path[128];
	snprintf(path, sizeof(path), "/v1/egress/session/%s", id);
	client_call(&bk.d, "POST", path, bk.paid_key,
		    "{\"allowed_cidrs\":[\"" SRV_GRANTED "\"],\"allow_https\":false}", &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_array_size(json_object_get(r.json, "allowed_cidrs")) == 1);
	client_resp_free(&r);
	json_t *files =
	    json_pack("{s:[{s:s,s:s}]}", "files", "path", "probe.py", "content", probe_py);
	client_must_exec(bk.paid_key, id, "true", files, &r);
	client_resp_free(&r);
	json_decref(files);
	CHECK_REACHES(bk.paid_key, id, SRV_GRANTED, 8000);
	client_call(&bk.d, "POST", path, bk.paid_key, "{\"allowed_cidrs\":[\"::1/128\"]}", &r);
	CHECK_STATUS(&r, 422);
	CHECK(strstr(r.body, "allowed_cidrs") != NULL);
	client_resp_free(&r);
	client_call(&bk.d, "GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_array_size(json_object_get(r.json, "allowed_cidrs")) == 1);
	client_resp_free(&r);
}

/* A plan without egress: a grant is 403 at create and later, a policy
 * granting nothing is fine. */
TEST(plan_without_egress_refused)
{
	need_root();
	struct client_resp r;
	client_call(&bk.d, "POST", "/sessions/create", bk.free_key,
		    "{\"network\":{\"allowHttps\":true}}", &r);
	CHECK_ERROR(&r, 403, "forbidden");
	CHECK_MSG(strstr(r.body, "outbound network") != NULL, "unclear: %s", r.body);
	client_resp_free(&r);
	char *id = session_with(bk.free_key, "{\"allowHttps\":false}");
	set_network(bk.free_key, id, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}", 403);
	CHECK_BLOCKED(bk.free_key, id, SRV_GRANTED, 8000);
	client_must_delete(bk.free_key, id);
	free(id);
}

/* A paid key with one plan number of its own (`--egress-connections 3`). */
static void paid_key_with(const char *flag, const char *value, char key[CLIENT_KEY_MAX])
{
	const char *const ov[] = {flag, value, NULL};
	if (client_key_create_with(&bk.d, "paid", ov, key, CLIENT_KEY_MAX) < 0)
		harness_fail(__FILE__, __LINE__, "cannot create key");
}

/* The connection cap of the key's plan holds. */
TEST(connection_cap)
{
	need_root();
	char key[CLIENT_KEY_MAX];
	paid_key_with("--egress-connections", "3", key);
	char *id = session_with(key, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}");
	char *o = client_must_run(
	    key, id,
	    "python3 -c \"\nimport socket\nok=0\nkeep=[]\nfor i in range(6):\n  try:\n"
	    "    keep.append(socket.create_connection(('" SRV_GRANTED "',8001),timeout=1)); ok+=1\n"
	    "  except Exception: pass\nprint(ok)\"");
	CHECK_MSG(atoi(o) == 3, "%s connections opened under a cap of 3", o);
	free(o);
	client_must_delete(key, id);
	free(id);
}

/* The bandwidth rules follow the key's cap, with a burst of a tenth of a
 * second of it: at 8 Mbit/s 1,000 kB/s and 100 kB; at the largest cap,
 * 100,000 Mbit/s, 1,250,000 kB, which the kernel's 32 bits of bytes hold
 * (a whole second's, 12,500,000 kB, wrapped round to 4,111,392). */
TEST(bandwidth_rule_follows_the_cap)
{
	need_root();
	static const struct {
		const char *mbps, *rule;
	} caps[] = {{"8", "limit rate over 1000 kbytes/second burst 100 kbytes drop"},
		    {"100000", "limit rate over 12500000 kbytes/second burst 1250000 kbytes drop"}};
	char hash[16];
	snprintf(hash, sizeof(hash), "%08x", sbx_instance_hash(bk.d.data_dir));
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		char key[CLIENT_KEY_MAX];
		paid_key_with("--egress-mbps", caps[i].mbps, key);
		char *id = session_with(key, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}");
		CHECK_MSG(sh("nft list table inet bunker_%s | grep -qF '%s'", hash, caps[i].rule) ==
			      0,
			  "no rule '%s' for a cap of %s Mbit/s", caps[i].rule, caps[i].mbps);
		client_must_delete(key, id);
		free(id);
	}
}

/* The cap at work: at 8 Mbit/s (1,000 kB/s; the kernel's bucket holds a
 * second of the rate plus the rule's burst of a tenth, 1.1 MB) a download
 * of BULK_BYTES (3 MB) into the session takes at least some 1.9 s: 2.03 s
 * here, where it took 0.009 s under the largest cap. Only the lower bound
 * is checked, with room: a loaded machine makes it slower, never faster. */
TEST_TIMEOUT(bandwidth_cap_slows_a_download, 90)
{
	need_root();
	char key[CLIENT_KEY_MAX];
	paid_key_with("--egress-mbps", "8", key);
	char *id = session_with(key, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}");
	char *o =
	    client_must_run(key, id,
			    "python3 -c \"\nimport socket,time\nt=time.monotonic()\n"
			    "s=socket.create_connection(('" SRV_GRANTED "',8002),timeout=20)\n"
			    "n=0\nwhile True:\n  d=s.recv(65536)\n  if not d: break\n"
			    "  n+=len(d)\nprint(n, time.monotonic()-t)\"");
	long bytes = 0;
	double secs = 0;
	CHECK_MSG(sscanf(o, "%ld %lf", &bytes, &secs) == 2, "no figures: '%s'", o);
	CHECK_MSG(bytes == BULK_BYTES, "%ld bytes of %d arrived", bytes, BULK_BYTES);
	CHECK_MSG(secs >= 1.0, "%ld bytes in %.3f s under a cap of 1,000 kB/s", bytes, secs);
	fprintf(stderr, "    %ld bytes in %.2f s under the cap\n", bytes, secs);
	free(o);
	client_must_delete(key, id);
	free(id);
}

static bool registry_reachable(void)
{
	CURL *c = curl_easy_init();
	if (c == NULL)
		return false;
	curl_easy_setopt(c, CURLOPT_URL, "https://registry.npmjs.org/is-odd");
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	return rc == CURLE_OK && status == 200;
}

/* allow_package_managers: `bun add is-odd` works, and the package is
 * there in the next execution. */
TEST_TIMEOUT(bun_add_with_package_managers, 120)
{
	need_root();
	if (!registry_reachable())
		SKIP("registry.npmjs.org is not reachable from this host");
	char *id = session_with(bk.paid_key, "{\"allowPackageManagers\":true}");
	struct client_resp r;
	json_t *extra = json_pack("{s:i}", "timeout", 30);
	client_must_exec(bk.paid_key, id, "cd /workspace && bun add is-odd 2>&1", extra, &r);
	json_decref(extra);
	CHECK_MSG(client_must_int(r.json, "exitCode", r.body) == 0, "bun add failed: %s", r.body);
	client_resp_free(&r);
	char *o = client_must_run(bk.paid_key, id,
				  "cd /workspace && bun -e \"console.log(require('is-odd')(3))\"");
	CHECK_STR_EQ(o, "true\n");
	free(o);
	/* Nothing else opened: a name outside the registries is refused. */
	o = probe(bk.paid_key, id, "other.bunker.test", 80);
	CHECK_MSG(strstr(o, "gaierror") != NULL, "resolved: %s", o);
	free(o);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(pip_install_with_package_managers)
{
	need_root();
	CURL *c = curl_easy_init();
	CURLcode rc = CURLE_COULDNT_CONNECT;
	if (c) {
		curl_easy_setopt(c, CURLOPT_URL, "https://pypi.org/simple/six/");
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
		rc = curl_easy_perform(c);
		curl_easy_cleanup(c);
	}
	if (rc != CURLE_OK)
		SKIP("pypi.org is not reachable from this host");
	char *id = session_with(bk.paid_key, "{\"allowPackageManagers\":true}");
	char *o = client_must_run(
	    bk.paid_key, id,
	    "pip install --user six >/dev/null 2>&1; python3 -c 'import six; print(1)'");
	CHECK_STR_EQ(o, "1\n");
	free(o);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* Delete, a crash of the daemon and its restart, and a clean stop leave
 * no interface and no table on the host. The delete is looked at with no
 * warm pool (the pool's prepared interfaces would come and go beside
 * it); the crash with one, once it has an interface prepared. */
TEST_TIMEOUT(nothing_left_after_delete_or_crash, 120)
{
	need_root();
	need_range(214);
	struct client_daemon d = {0};
	snprintf(d.build, sizeof(d.build), "%s", bk.d.build);
	const char *const args[] = {"--egress-net", "10.214.0.0/16", "--dns-hosts", hosts_file,
				    NULL};
	const char *const no_pool[] = {
	    "--egress-net", "10.214.0.0/16", "--dns-hosts", hosts_file, "--warm-pool", "0", NULL};
	CHECK(client_daemon_start(&d, no_pool) == 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	struct client_resp r;
	char id[64];
	create_granted_on(&d, key, id, sizeof(id));
	CHECK(client_egress_state(d.data_dir, false) == 2); /* its table and its interface */
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&d, "DELETE", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char hash[16];
	snprintf(hash, sizeof(hash), "%08x", sbx_instance_hash(d.data_dir));
	CHECK_MSG(sh("ls /sys/class/net | grep -q '^bk%.6s'", hash) != 0,
		  "a deleted session's interface is left");
	CHECK_MSG(sh("nft list table inet bunker_%s | grep -q s1_out", hash) != 0,
		  "a deleted session's chain is left");
	CHECK(client_daemon_halt(&d, SIGTERM) >= 0);
	CHECK(client_daemon_start(&d, args) == 0);
	client_call(&d, "POST", "/sessions/create", key,
		    "{\"network\":{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	/* The grant has the pool prepare a network: the session's interface
	 * and at least one more. */
	int links = 0;
	for (int i = 0; i < 100 && links < 2; i++, usleep(50000))
		links =
		    sh("test $(ls /sys/class/net | grep -c '^bk%.6s') -ge 2", hash) == 0 ? 2 : 0;
	CHECK_MSG(links == 2, "the warm pool prepared no network after a grant");
	CHECK(client_daemon_halt(&d, SIGKILL) >= 0);
	CHECK(client_daemon_start(&d, args) == 0);
	CHECK(client_daemon_stop(&d) >= 0);
	int left = client_egress_state(d.data_dir, false);
	CHECK_MSG(left == 0, "%d things of egress left after a crash, restart and stop", left);
	CHECK(client_daemon_check(&d) == 0);
}

/* ---- bytes in and out ---- */

/* What cmd printed in session id of daemon d; it must exit 0. Caller
 * frees. */
static char *run_on(const struct client_daemon *d, const char *key, const char *id, const char *cmd)
{
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command", cmd);
	struct client_resp r;
	client_call_json(d, "POST", "/execute", key, body, &r);
	json_decref(body);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(client_must_int(r.json, "exitCode", r.body) == 0, "'%s' failed: %s", cmd, r.body);
	char *out = strdup(client_must_str(r.json, "stdout", r.body));
	client_resp_free(&r);
	return out;
}

/* Downloads what the test server's port 8002 sends into session id:
 * BULK_BYTES, read whole. */
static void download_on(const struct client_daemon *d, const char *key, const char *id)
{
	char *o = run_on(d, key, id,
			 "python3 -c \"import socket\ns=socket.create_connection(('" SRV_GRANTED
			 "',8002),timeout=10); n=0\nwhile True:\n  b=s.recv(65536)\n  if not "
			 "b: break\n  n+=len(b)\nprint(n)\"");
	CHECK_MSG(atoll(o) == BULK_BYTES, "downloaded %s bytes, not " XSTR(BULK_BYTES), o);
	free(o);
}

/* The session's bytes as GET /sessions/{id} and the InstaVM usage show
 * them; both must agree on what came in. */
static void bytes_of(const struct client_daemon *d, const char *key, const char *id, long long *in,
		     long long *out)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *net = json_object_get(r.json, "network");
	CHECK_MSG(json_is_object(net), "no network object: %s", r.body);
	*in = client_must_int(net, "bytesIn", r.body);
	*out = client_must_int(net, "bytesOut", r.body);
	client_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/sessions/usage/%s", id);
	client_call(d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	long long rx = client_must_int(r.json, "network_rx_bytes", r.body);
	long long tx = client_must_int(r.json, "network_tx_bytes", r.body);
	client_resp_free(&r);
	/* Read one after the other while nothing moves: the same figures. */
	CHECK_MSG(rx == *in && tx == *out, "usage says %lld in, %lld out; the session %lld, %lld",
		  rx, tx, *in, *out);
}

/* bunker_egress_bytes_total{direction="in"} of daemon d. */
static long long metrics_in(const struct client_daemon *d)
{
	struct client_resp r;
	client_call(d, "GET", "/metrics", NULL, NULL, &r);
	CHECK_MSG(r.status == 200 && r.body, "GET /metrics: %ld", r.status);
	static const char line[] = "\nbunker_egress_bytes_total{direction=\"in\"} ";
	const char *at = strstr(r.body, line);
	CHECK_MSG(at != NULL, "no egress bytes in /metrics: %.3000s", r.body);
	CHECK_MSG(strstr(r.body, "\nbunker_egress_bytes_total{direction=\"out\"} ") != NULL,
		  "no egress bytes out in /metrics");
	long long n = atoll(at + strlen(line));
	client_resp_free(&r);
	return n;
}

/* A session's bytes are counted over its whole life: a download shows in
 * its view, its InstaVM usage and the daemon's /metrics; they stay when
 * its network is taken away and given back, and when it sleeps deeply
 * (a clean stop of the daemon) and wakes on the next start. */
TEST_TIMEOUT(bytes_counted_over_the_session_life, 150)
{
	need_root();
	need_range(215);
	struct client_daemon d = {0};
	snprintf(d.build, sizeof(d.build), "%s", bk.d.build);
	const char *const args[] = {"--egress-net", "10.215.0.0/16", "--warm-pool", "0", NULL};
	CHECK(client_daemon_start(&d, args) == 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	long long m0 = metrics_in(&d);
	struct client_resp r;
	char id[64];
	create_granted_on(&d, key, id, sizeof(id));
	long long in, out;
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in < BULK_BYTES, "%lld bytes in before any download", in);

	download_on(&d, key, id);
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in >= BULK_BYTES, "%lld bytes in after a download of " XSTR(BULK_BYTES), in);
	CHECK_MSG(out > 0, "no bytes out after a download");
	long long m1 = metrics_in(&d);
	CHECK_MSG(m1 - m0 >= BULK_BYTES, "/metrics grew by %lld in a download of " XSTR(BULK_BYTES),
		  m1 - m0);

	/* Taken away (the interface goes) and given back: nothing lost. */
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s/network", id);
	client_call(&d, "PATCH", path, key, "{\"allowedCidrs\":[]}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	long long before = in;
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in >= before, "%lld bytes in once revoked, %lld before", in, before);
	CHECK_MSG(metrics_in(&d) >= m1, "/metrics went back once a network went");
	client_call(&d, "PATCH", path, key, "{\"allowedCidrs\":[\"" SRV_GRANTED "\"]}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	download_on(&d, key, id);
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in >= 2LL * BULK_BYTES, "%lld bytes in after two downloads", in);

	/* A clean stop puts it to deep sleep; the next start wakes it with a
	 * new sandbox and a new interface. */
	CHECK(client_daemon_halt(&d, SIGTERM) >= 0);
	CHECK(client_daemon_start(&d, args) == 0);
	before = in;
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in >= before, "%lld bytes in after a deep sleep, %lld before", in, before);
	download_on(&d, key, id);
	bytes_of(&d, key, id, &in, &out);
	CHECK_MSG(in >= 3LL * BULK_BYTES, "%lld bytes in after three downloads", in);
	CHECK_MSG(metrics_in(&d) >= BULK_BYTES, "/metrics missed the download after the restart");

	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&d, "DELETE", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	CHECK(client_daemon_stop(&d) >= 0);
	CHECK(client_daemon_check(&d) == 0);
}

/* Switching ip_forward on must not make the host a router between
 * networks that are not sessions': two namespaces of the test's, each
 * behind a veth of its own, stay unreachable from each other through the
 * host while the daemon runs (the host forwarded nothing before it). */
TEST(host_forwards_only_sessions)
{
	need_root();
	if (ip_forward_before[0] == '1' && !forward_mark_before)
		SKIP("this host forwarded packets before the daemon started");
	/* Addresses of the test's own, on no network of this machine's. */
	if (sh("ip -4 addr | grep -q 'inet 198\\.18\\.' || ip route | grep -q '198\\.18\\.'") == 0)
		SKIP("198.18.0.0/15 is in use on this machine");
	char a[32], b[32];
	int pid = (int)getpid() % 100000;
	snprintf(a, sizeof(a), "fwa%d", pid);
	snprintf(b, sizeof(b), "fwb%d", pid);
	int ok = sh("ip netns add %s && ip netns add %s", a, b) == 0 &&
		 sh("ip link add %sh type veth peer name eth0 netns %s && "
		    "ip link add %sh type veth peer name eth0 netns %s",
		    a, a, b, b) == 0 &&
		 sh("ip addr add 198.18.1.1/30 dev %sh && ip link set %sh up && "
		    "ip addr add 198.18.1.5/30 dev %sh && ip link set %sh up",
		    a, a, b, b) == 0 &&
		 sh("ip -n %s addr add 198.18.1.2/30 dev eth0 && ip -n %s link set eth0 up && "
		    "ip -n %s route add 198.18.1.4/30 via 198.18.1.1",
		    a, a, a) == 0 &&
		 sh("ip -n %s addr add 198.18.1.6/30 dev eth0 && ip -n %s link set eth0 up && "
		    "ip -n %s link set lo up && ip -n %s route add 198.18.1.0/30 via 198.18.1.5",
		    b, b, b, b) == 0;
	char fwd[8] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "r");
	if (f) {
		if (fgets(fwd, sizeof(fwd), f) == NULL)
			fwd[0] = '\0';
		fclose(f);
	}
	/* A listener in b; a connection from a, through the host. */
	int reached = ok ? sh("ip netns exec %s python3 -c \"import socket,time\n"
			      "s=socket.socket(); s.bind(('198.18.1.6',9000)); s.listen(1); "
			      "time.sleep(4)\" & sleep 0.5; "
			      "ip netns exec %s python3 -c \"import socket\n"
			      "s=socket.create_connection(('198.18.1.6',9000),timeout=2)\" "
			      "2>/dev/null; r=$?; wait; exit $r",
			      b, a)
			 : -1;
	sh("ip link del %sh 2>/dev/null; ip link del %sh 2>/dev/null; ip netns del %s; "
	   "ip netns del %s",
	   a, b, a, b);
	CHECK_MSG(ok, "cannot build the test's namespaces");
	CHECK_MSG(fwd[0] == '1', "ip_forward is '%s' while the daemon runs egress", fwd);
	CHECK_MSG(reached != 0, "the host forwarded a connection between two namespaces that "
				"are not sessions");
}

/* A stop deletes the daemon's table at once, however busy the host's
 * other rulesets are: through libnftables it fetched the ruleset again
 * for as long as its generation kept changing, so another process that
 * kept changing a table of its own held the stop with it (10.8 s here
 * against a 10 s loop of changes; 0.03 s over nfnetlink). */
TEST_TIMEOUT(stop_not_held_by_another_ruleset_changing, 90)
{
	need_root();
	need_range(215);
	struct client_daemon d = {0};
	snprintf(d.build, sizeof(d.build), "%s", bk.d.build);
	const char *const args[] = {"--egress-net", "10.215.0.0/16", "--warm-pool", "0", NULL};
	CHECK(client_daemon_start(&d, args) == 0);
	char table[32];
	snprintf(table, sizeof(table), "bkt_churn%d", (int)getpid());
	pid_t churn = fork();
	CHECK(churn >= 0);
	if (churn == 0) {
		/* Changes for longer than a stop may take (client_daemon_stop). */
		double end = client_now() + 30;
		while (client_now() < end)
			sh("printf 'add table inet %s\\nadd chain inet %s c1\\nadd chain inet %s "
			   "c2\\ndelete table inet %s\\n' | nft -f -",
			   table, table, table, table);
		_exit(0);
	}
	usleep(500 * 1000);
	int stopped = client_daemon_stop(&d);
	kill(churn, SIGKILL);
	waitpid(churn, NULL, 0);
	sh("nft delete table inet %s 2>/dev/null; true", table);
	CHECK_MSG(stopped == 0, "the daemon did not stop while another table kept changing");
}

/* ---- answers too large for UDP ---- */

/* big.bunker.test asked of the session's resolver over UDP, then over TCP
 * (argv[1]: the resolver's address); prints "udp tc=T an=N tcp tc=T
 * an=N", or "FAIL <why>". */
static const char bigdns_py[] =
    "import socket,struct,sys\n"
    "sys.path.insert(0,'/workspace')\n"
    "from dnstcp import query,answer,recvn\n"
    "def flags(r): return (struct.unpack('>H',r[2:4])[0]>>9)&1, "
    "struct.unpack('>H',r[6:8])[0]\n"
    "try:\n"
    "  u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(5)\n"
    "  u.sendto(query(1,'big.bunker.test')[2:],(sys.argv[1],53)); ut=flags(u.recv(65535))\n"
    "  s=socket.create_connection((sys.argv[1],53),timeout=8); "
    "s.sendall(query(2,'big.bunker.test'))\n"
    "  tt=flags(recvn(s,struct.unpack('>H',recvn(s,2))[0]))\n"
    "  print('udp tc=%d an=%d tcp tc=%d an=%d'%(ut+tt))\n"
    "except Exception as e: print('FAIL',type(e).__name__,e)\n";

/* An answer larger than UDP carries: over UDP the session gets it cut,
 * with TC set, as upstream sent it; over TCP the resolver asks upstream
 * over TCP, and the session gets every record, whose addresses are
 * pinned: SRV_OTHER, past the UDP cut, opens only once the TCP answer
 * came. (Forwarded over UDP, the TCP answer was the truncated one
 * again.) */
TEST_TIMEOUT(dns_answer_too_large_for_udp_comes_whole_over_tcp, 90)
{
	need_root();
	need_range(217);
	struct client_daemon d = {0};
	snprintf(d.build, sizeof(d.build), "%s", bk.d.build);
	const char *const args[] = {"--egress-net",
				    "10.217.0.0/16",
				    "--dns-upstream",
				    SRV_GRANTED,
				    "--warm-pool",
				    "0",
				    NULL};
	CHECK(client_daemon_start(&d, args) == 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	struct client_resp r;
	client_call(&d, "POST", "/sessions/create", key,
		    "{\"network\":{\"allowedDomains\":[\"big.bunker.test\"]}}", &r);
	CHECK_STATUS(&r, 200);
	char id[64];
	snprintf(id, sizeof(id), "%s", client_must_str(r.json, "sessionId", r.body));
	client_resp_free(&r);
	json_t *body =
	    json_pack("{s:s,s:s,s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "sessionId", id, "command",
		      "true", "files", "path", "probe.py", "content", probe_py, "path", "dnstcp.py",
		      "content", dnstcp_py, "path", "bigdns.py", "content", bigdns_py);
	client_call_json(&d, "POST", "/execute", key, body, &r);
	json_decref(body);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char *o = run_on(&d, key, id, "python3 /workspace/probe.py " SRV_OTHER " 8000");
	CHECK_MSG(strncmp(o, "FAIL", 4) == 0, "reached before any answer: %s", o);
	free(o);
	o = run_on(&d, key, id, "python3 /workspace/bigdns.py 10.213.0.1");
	o[strcspn(o, "\n")] = '\0';
	/* 512 bytes hold 29 records of a 33-byte question. */
	CHECK_STR_EQ(o, "udp tc=1 an=29 tcp tc=0 an=" XSTR(DNS_BIG_COUNT));
	free(o);
	o = run_on(&d, key, id, "python3 /workspace/probe.py " SRV_OTHER " 8000");
	CHECK_MSG(strncmp(o, "hello", 5) == 0, "not pinned by the TCP answer: %s", o);
	free(o);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&d, "DELETE", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	CHECK(client_daemon_stop(&d) >= 0);
	CHECK(client_daemon_check(&d) == 0);
}
