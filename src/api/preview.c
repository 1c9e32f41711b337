/* Previews (API.md "Preview", "app-url"): a request is relayed by http/ to
 * a port inside a session when its Host is
 *   "ses-<20 characters>.<preview domain>"  (buntime: port 8080),
 *   "vm-<20 characters>-<port>.<preview domain>"  (InstaVM's direct_url),
 * or, on any host, its path is
 *   "/v1/app/<session id>/<port>/..."  (InstaVM's url; the prefix is cut).
 * This file holds the host hooks that http/ calls: which requests are
 * previews, and for one, the upstream connection (core_preview_dial(),
 * which wakes the session and holds it active while the connection is
 * open) or the page to answer with instead.
 *
 * No API key and no rate limit: the URL is the capability. An unknown,
 * deleted or expired session is 404; nothing listening on the port is 502;
 * both are short HTML pages, since a browser is what opens a preview.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/util.h"

/* The path proxy of the InstaVM dialect: "/v1/app/{session_id}/{port}". */
#define APP_PATH "/v1/app/"

/* A relayed connection's: the session held open, and the path prefix the
 * relay cuts off (empty for a preview host). */
struct preview_conn {
	struct core_preview *hold;
	char prefix[64];
	char hop_line[600]; /* RELAY_HEADER for a hop to the owner */
};

bool api__preview_app_path(const char *target, char *id, size_t idlen, int *port, char *prefix,
			   size_t prefixlen)
{
	if (strncmp(target, APP_PATH, strlen(APP_PATH)) != 0)
		return false;
	const char *s = target + strlen(APP_PATH);
	size_t n = strcspn(s, "/");
	if (!core_session_id_form(s, n) || s[n] != '/' || idlen <= n)
		return false;
	const char *p = s + n + 1;
	int v;
	if (!port_parse(&p, &v) || (*p != '\0' && *p != '/' && *p != '?'))
		return false;
	size_t cut = (size_t)(p - target);
	if (cut >= prefixlen)
		return false;
	memcpy(id, s, n);
	id[n] = '\0';
	*port = v;
	memcpy(prefix, target, cut);
	prefix[cut] = '\0';
	return true;
}

/* Which session and port a request is for: its preview host, else its
 * path proxy target. */
static bool preview_target(struct api *api, const char *host, const char *target, char *id,
			   size_t idlen, int *port, char *prefix, size_t prefixlen)
{
	prefix[0] = '\0';
	return core_preview_host(api->core, host, id, idlen, port) ||
	       api__preview_app_path(target, id, idlen, port, prefix, prefixlen);
}

static enum http_route preview_route(void *ctx, const char *host, const char *target)
{
	struct api *api = ctx;
	char id[32], prefix[64];
	int port;
	return preview_target(api, host, target, id, sizeof(id), &port, prefix, sizeof(prefix))
		   ? HTTP_ROUTE_RELAY
		   : HTTP_ROUTE_API;
}

static void preview_on_request(void *ctx)
{
	struct preview_conn *pc = ctx;
	core_preview_touch(pc->hold);
}

static bool preview_cancelled(void *ctx)
{
	struct preview_conn *pc = ctx;
	return core_preview_cancelled(pc->hold);
}

static void preview_release(void *ctx)
{
	struct preview_conn *pc = ctx;
	core_preview_release(pc->hold);
	free(pc);
}

static void peer_release(void *ctx)
{
	struct preview_conn *pc = ctx;
	explicit_bzero(pc->hop_line, sizeof(pc->hop_line));
	free(pc);
}

static void page(struct http_response *res, int status, const char *title, const char *html)
{
	char *body = NULL;
	int n = asprintf(&body,
			 "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
			 "<title>%d %s</title></head>\n<body>\n%s</body></html>\n",
			 status, title, html);
	if (n < 0) {
		http_response_set(res, 500, "text/plain; charset=utf-8", "internal error\n", 15);
		return;
	}
	http_response_take(res, status, "text/html; charset=utf-8", body, (size_t)n);
}

static void page_not_found(struct http_response *res, const char *id)
{
	char html[512];
	snprintf(html, sizeof(html),
		 "<h1>No such session</h1>\n"
		 "<p>No session <code>%s</code> exists: it was never created, or it was "
		 "deleted, or it expired.</p>\n",
		 id);
	page(res, 404, "Not Found", html);
}

static void page_nothing_listens(struct http_response *res, const char *id, int port)
{
	char html[2048];
	snprintf(html, sizeof(html),
		 "<h1>Nothing is listening on port %d</h1>\n"
		 "<p>Session <code>%s</code> is running, but no server in it accepts "
		 "connections on port %d, so its preview has nothing to show yet.</p>\n"
		 "<p>Start one in a background execution, for example with "
		 "<code>server.ts</code> (<code>$PORT</code> is %d in every session):</p>\n"
		 "<pre>Bun.serve({port: %d, fetch: () =&gt; new "
		 "Response(\"hi\")});</pre>\n"
		 "<p>run as <code>POST /execute</code> with</p>\n"
		 "<pre>{\"sessionId\": \"%s\", \"command\": \"nohup bun run server.ts &gt; "
		 "server.log 2&gt;&amp;1 &amp;\"}</pre>\n"
		 "<p>Then reload this page. Servers do not survive a session's deep sleep: a "
		 "session woken from it must start its server again.</p>\n",
		 port, id, port, CORE_PREVIEW_PORT, port, id);
	page(res, 502, "Bad Gateway", html);
}

static int preview_open(void *ctx, const char *host, const char *target, const char *hop,
			struct http_upstream *up, struct http_response *res)
{
	struct api *api = ctx;
	/* A connection relayed by another node is served here or not at
	 * all (one hop); a made-up one is refused. */
	if (hop && !api_cluster_hop_valid(api, hop)) {
		page(res, 403, "Forbidden",
		     "<h1>Forbidden</h1>\n<p>" RELAY_HEADER " is for the nodes of a "
		     "cluster.</p>\n");
		return -1;
	}
	struct preview_conn *pc = calloc(1, sizeof(*pc));
	if (pc == NULL) {
		page(res, 503, "Service Unavailable", "<h1>Out of memory</h1>\n");
		return -1;
	}
	char id[32];
	int port;
	if (!preview_target(api, host, target, id, sizeof(id), &port, pc->prefix,
			    sizeof(pc->prefix))) {
		free(pc);
		page(res, 404, "Not Found", "<h1>No such session</h1>\n");
		return -1;
	}
	int fd;
	struct bk_err err = BK_ERR_INIT;
	/* Another node's session: the connection is relayed to that node as
	 * it came (the whole target: the owner routes it by the same Host or
	 * path), and the owner relays it into the session. */
	struct core_node owner;
	const char *secret = api_cluster_secret(api);
	int where = core_session_locate(api->core, NULL, id, &owner, &err);
	if (where > 0 && (hop || secret == NULL))
		where =
		    bk_err_kind(&err, BK_E_UNAVAILABLE, "session '%s' is served by node '%s'%s", id,
				owner.name, hop ? ", not by this one it was relayed to" : "");
	if (where > 0 && (fd = http_connect_url(owner.advertise, &err)) >= 0) {
		snprintf(pc->hop_line, sizeof(pc->hop_line), RELAY_HEADER ": %s", secret);
		*up = (struct http_upstream){
		    .fd = fd,
		    .proto = core_preview_scheme(api->core),
		    .key_prefix = CORE_KEY_PREFIX,
		    .hop_line = pc->hop_line,
		    .release = peer_release,
		    .ctx = pc,
		};
		return 0;
	}
	if (where != 0) {
		free(pc);
		fprintf(stderr, "bunkerd: preview of %s: %s\n", id, err.msg);
		page(res, 503, "Service Unavailable",
		     "<h1>The node that runs this session cannot be reached</h1>\n"
		     "<p>Try again in a moment.</p>\n");
		return -1;
	}
	if (core_preview_dial(api->core, id, port, &fd, &pc->hold, &err) < 0) {
		free(pc);
		switch (err.kind) {
		case BK_E_NOT_FOUND:
			page_not_found(res, id);
			break;
		case BK_E_UNAVAILABLE:
			page_nothing_listens(res, id, port);
			break;
		default:
			fprintf(stderr, "bunkerd: preview of %s: %s\n", id, err.msg);
			page(res, 502, "Bad Gateway",
			     "<h1>The session cannot be reached</h1>\n"
			     "<p>Its preview failed on the server's side; the server's log "
			     "says why.</p>\n");
			break;
		}
		return -1;
	}
	*up = (struct http_upstream){
	    .fd = fd,
	    .proto = core_preview_scheme(api->core),
	    .prefix = pc->prefix[0] ? pc->prefix : NULL,
	    .key_prefix = CORE_KEY_PREFIX,
	    .on_request = preview_on_request,
	    .cancelled = preview_cancelled,
	    .release = preview_release,
	    .ctx = pc,
	};
	return 0;
}

struct http_host_hooks api_preview_hooks(struct api *api)
{
	return (struct http_host_hooks){
	    .route = preview_route,
	    .open = preview_open,
	    .hop_name = RELAY_HEADER,
	    .ctx = api,
	};
}
