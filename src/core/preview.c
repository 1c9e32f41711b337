/* Previews: a session's web app reached through its preview host name.
 *
 * core/ decides which host names a session ("ses-<20>.<preview domain>"
 * is the inverse of the previewUrl that core_session_create() hands out,
 * "vm-<20>-<port>.<preview domain>" of core_preview_port_url()),
 * wakes the session and dials into it (sandbox/net.c), and keeps the
 * session awake while the connection is open: each connection holds the
 * session's rw lock shared, the way an execution does, so the reaper's
 * trywrlock fails and the session counts as busy. A delete shuts the
 * connections down (core__preview_shutdown_locked()) before it takes rw
 * exclusively. The bytes themselves are relayed by http/, which knows
 * nothing of sessions.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core_int.h"
#include "util/util.h"

/* How long a connect inside the session may take: on loopback it is
 * answered at once, unless the server's accept queue is full. */
#define PREVIEW_DIAL_TIMEOUT_MS 10000

struct core_preview {
	struct core *core;
	struct session *s;
	int fd;
	bool cancelled;		   /* atomic: shut down by a delete */
	struct core_preview *next; /* in s->previews, under s->mu */
};

const char *core_preview_scheme(const struct core *core)
{
	return core->cfg.preview_scheme;
}

/* The 20 id characters at s (any case), lowered into out; false when any
 * of them is not [A-Za-z0-9]. */
static bool id_chars(const char *s, char out[21])
{
	for (int i = 0; i < 20; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isascii(ch) || !isalnum(ch))
			return false;
		out[i] = (char)tolower(ch);
	}
	out[20] = '\0';
	return true;
}

/* Whether rest is the preview domain: a domain without a port takes any
 * port ("example.com:443" behind a proxy that keeps it); one with a port
 * takes only its own. */
static bool is_preview_domain(const struct core *core, const char *rest)
{
	const char *domain = core->cfg.preview_domain;
	size_t dl = strlen(domain);
	if (dl == 0 || strncasecmp(rest, domain, dl) != 0)
		return false;
	const char *tail = rest + dl;
	if (*tail == '\0')
		return true;
	return strchr(domain, ':') == NULL && *tail == ':' && tail[1] != '\0' &&
	       strspn(tail + 1, "0123456789") == strlen(tail + 1);
}

const char *core_preview_domain(const struct core *core)
{
	return core->cfg.preview_domain;
}

bool core_preview_host(const struct core *core, const char *host, char *id, size_t len, int *port)
{
	char rnd[21];
	const char *rest;
	int p = CORE_PREVIEW_PORT;
	if (len < 32)
		return false;
	if (strncasecmp(host, "ses-", 4) == 0 && id_chars(host + 4, rnd) && host[24] == '.') {
		rest = host + 25;
	} else if (strncasecmp(host, "vm-", 3) == 0 && id_chars(host + 3, rnd) && host[23] == '-') {
		rest = host + 24;
		if (!port_parse(&rest, &p) || *rest++ != '.')
			return false;
	} else {
		return false;
	}
	if (!is_preview_domain(core, rest))
		return false;
	snprintf(id, len, "ses_%s", rnd);
	*port = p;
	return true;
}

bool core_session_id_form(const char *s, size_t n)
{
	if (n != 24 || memcmp(s, "ses_", 4) != 0)
		return false;
	for (size_t i = 4; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

void core_vm_id(const char *id, char *out, size_t len)
{
	snprintf(out, len, "vm-%s", strncmp(id, "ses_", 4) == 0 ? id + 4 : id);
}

void core_preview_port_url(const struct core *core, const char *id, int port, char *out, size_t len)
{
	char vm[32];
	core_vm_id(id, vm, sizeof(vm));
	snprintf(out, len, "%s://%s-%d.%s/", core->cfg.preview_scheme, vm, port,
		 core->cfg.preview_domain);
}

int core_preview_dial(struct core *core, const char *id, int port, int *fd,
		      struct core_preview **out, struct bk_err *err)
{
	struct core_preview *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return bk_err_set(err, ENOMEM, "cannot open a preview connection");
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, NULL, id, &s, &sbx, err) < 0) {
		free(p);
		return -1;
	}
	int c = core->sbx->ops->dial(sbx, port, PREVIEW_DIAL_TIMEOUT_MS, err);
	if (c < 0) {
		core__session_leave(core, s);
		free(p);
		return -1;
	}
	*p = (struct core_preview){.core = core, .s = s, .fd = c};
	pthread_mutex_lock(&s->mu);
	p->next = s->previews;
	s->previews = p;
	pthread_mutex_unlock(&s->mu);
	/* A delete that began after core__session_enter() and shut down the list
	 * before this connection was on it: it must not outlive the session. */
	if (__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE)) {
		core_preview_release(p);
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	*fd = c;
	*out = p;
	return 0;
}

void core_preview_touch(struct core_preview *p)
{
	/* Memory only: this runs on a relay worker, which must never wait
	 * for SQLite's lock. The reaper writes it to the store
	 * (core__session_store_activity()). */
	__atomic_store_n(&p->s->last_active_ms, now_ms(), __ATOMIC_RELAXED);
}

void core_preview_release(struct core_preview *p)
{
	if (p == NULL)
		return;
	struct session *s = p->s;
	pthread_mutex_lock(&s->mu);
	for (struct core_preview **pp = &s->previews; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	/* Off the list first: a delete shuts down only fds that are still
	 * ours, never a number the kernel has handed out again. */
	close(p->fd);
	core__session_leave(p->core, s);
	free(p);
}

bool core_preview_cancelled(const struct core_preview *p)
{
	return __atomic_load_n(&p->cancelled, __ATOMIC_ACQUIRE);
}

void core__preview_shutdown_locked(struct session *s)
{
	for (struct core_preview *p = s->previews; p; p = p->next) {
		__atomic_store_n(&p->cancelled, true, __ATOMIC_RELEASE);
		shutdown(p->fd, SHUT_RDWR);
	}
}
