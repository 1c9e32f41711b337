/* Preview URLs of the buntime dialect (API.md "Preview"): a request whose
 * Host is "ses-<20 characters>.<preview domain>" is relayed by http/ to
 * port 8080 inside that session. This file holds the host hooks that http/
 * calls: which hosts are previews, and for one, the upstream connection
 * (core_preview_dial(), which wakes the session and holds it active while
 * the connection is open) or the page to answer with instead.
 *
 * No API key and no rate limit: the URL is the capability. An unknown,
 * deleted or expired session is 404; nothing listening on the port is 502;
 * both are short HTML pages, since a browser is what opens a preview.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* The port of a session's web app in the buntime dialect: every execution
 * has PORT=8080 in its environment. */
#define PREVIEW_PORT 8080

static enum http_route preview_route(void *ctx, const char *host)
{
	struct api *api = ctx;
	char id[32];
	return core_preview_host(api->core, host, id, sizeof(id)) ? HTTP_ROUTE_RELAY
								  : HTTP_ROUTE_API;
}

static void preview_on_request(void *ctx)
{
	core_preview_touch(ctx);
}

static bool preview_cancelled(void *ctx)
{
	return core_preview_cancelled(ctx);
}

static void preview_release(void *ctx)
{
	core_preview_release(ctx);
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

static void page_nothing_listens(struct http_response *res, const char *id)
{
	char html[2048];
	snprintf(html, sizeof(html),
		 "<h1>Nothing is listening on port %d</h1>\n"
		 "<p>Session <code>%s</code> is running, but no server in it accepts "
		 "connections on port %d (<code>$PORT</code>), so its preview has nothing to "
		 "show yet.</p>\n"
		 "<p>Start one in a background execution, for example with "
		 "<code>server.ts</code>:</p>\n"
		 "<pre>Bun.serve({port: process.env.PORT, fetch: () =&gt; new "
		 "Response(\"hi\")});</pre>\n"
		 "<p>run as <code>POST /execute</code> with</p>\n"
		 "<pre>{\"sessionId\": \"%s\", \"command\": \"nohup bun run server.ts &gt; "
		 "server.log 2&gt;&amp;1 &amp;\"}</pre>\n"
		 "<p>Then reload this page. Servers do not survive a session's deep sleep: a "
		 "session woken from it must start its server again.</p>\n",
		 PREVIEW_PORT, id, PREVIEW_PORT, id);
	page(res, 502, "Bad Gateway", html);
}

static int preview_open(void *ctx, const char *host, struct http_upstream *up,
			struct http_response *res)
{
	struct api *api = ctx;
	char id[32];
	if (!core_preview_host(api->core, host, id, sizeof(id))) {
		page(res, 404, "Not Found", "<h1>No such session</h1>\n");
		return -1;
	}
	int fd;
	struct core_preview *hold;
	struct bk_err err;
	if (core_preview_dial(api->core, id, PREVIEW_PORT, &fd, &hold, &err) < 0) {
		switch (err.kind) {
		case BK_E_NOT_FOUND:
			page_not_found(res, id);
			break;
		case BK_E_UNAVAILABLE:
			page_nothing_listens(res, id);
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
	    .on_request = preview_on_request,
	    .cancelled = preview_cancelled,
	    .release = preview_release,
	    .ctx = hold,
	};
	return 0;
}

struct http_host_hooks api_preview_hooks(struct api *api)
{
	return (struct http_host_hooks){
	    .route = preview_route,
	    .open = preview_open,
	    .ctx = api,
	};
}
