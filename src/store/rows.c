/* Records to and from rows, for every store (store/rows.h). */
#include "store/rows.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/util.h"

bool store__str_ok(const char *s, size_t size)
{
	return strnlen(s, size) < size;
}

bool store__state_ok(int state)
{
	return state >= STORE_SESSION_ACTIVE && state <= STORE_SESSION_DEEP_SLEEP;
}

bool store__vm_ok(int vm)
{
	return vm >= STORE_VM_NONE && vm <= STORE_VM_TERMINATED;
}

bool store__task_status_ok(int status)
{
	return status >= STORE_TASK_QUEUED && status <= STORE_TASK_KILLED;
}

int store__key_check(const struct store_key *k, struct bk_err *err)
{
	if (!store__str_ok(k->id, sizeof(k->id)) || !store__str_ok(k->plan, sizeof(k->plan)) ||
	    !store__str_ok(k->overrides, sizeof(k->overrides)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert key: unterminated id, plan or overrides");
	return 0;
}

int store__session_check(const struct store_session *s, struct bk_err *err)
{
	if (!store__str_ok(s->id, sizeof(s->id)) || !store__str_ok(s->key_id, sizeof(s->key_id)) ||
	    !store__str_ok(s->public_id, sizeof(s->public_id)) ||
	    !store__str_ok(s->owner, sizeof(s->owner)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session: unterminated id or key id");
	if (!store__state_ok((int)s->state) || !store__vm_ok((int)s->vm_state))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session '%s': unknown state %d or VM state %d",
				   s->id, (int)s->state, (int)s->vm_state);
	return 0;
}

int store__task_check(const struct store_task *t, struct bk_err *err)
{
	if (!store__str_ok(t->id, sizeof(t->id)) ||
	    !store__str_ok(t->session_id, sizeof(t->session_id)) ||
	    !store__str_ok(t->key_id, sizeof(t->key_id)) ||
	    !store__task_status_ok((int)t->status) || t->out_len > INT32_MAX ||
	    t->err_len > INT32_MAX)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot write task: invalid fields");
	return 0;
}

int store__idem_check(const struct store_idem *r, struct bk_err *err)
{
	if (!store__str_ok(r->key_id, sizeof(r->key_id)) ||
	    !store__str_ok(r->idem_key, sizeof(r->idem_key)) ||
	    !store__str_ok(r->content_type, sizeof(r->content_type)) || r->body_len > INT_MAX)
		return bk_err_kind(
		    err, BK_E_INTERNAL,
		    "cannot store idempotency key: unterminated field or body too long");
	return 0;
}

/* Copies a text column into a fixed buffer; -1 when it is NULL or too long. */
static int col_copy(const struct store__row *r, int col, char *buf, size_t size)
{
	size_t len = 0;
	const char *v = r->text(r, col, &len);
	if (v == NULL || len >= size)
		return -1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	return 0;
}

/* A text column, copied (NULL reads as def). */
static char *col_dup(const struct store__row *r, int col, const char *def)
{
	size_t len = 0;
	const char *v = r->text(r, col, &len);
	return strdup(v ? v : def);
}

/* A blob column as a malloc'd NUL-terminated string. */
static char *blob_dup(const struct store__row *r, int col, size_t *len)
{
	size_t n = 0;
	const void *b = r->blob(r, col, &n);
	char *s = malloc(n + 1);
	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, b, n);
	s[n] = '\0';
	*len = n;
	return s;
}

int store__key_from_row(const struct store__row *r, struct store_key *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t hlen = 0;
	const void *hash = r->blob(r, 1, &hlen);
	if (col_copy(r, 0, out->id, sizeof(out->id)) < 0 ||
	    col_copy(r, 2, out->plan, sizeof(out->plan)) < 0 ||
	    col_copy(r, 5, out->overrides, sizeof(out->overrides)) < 0 || hash == NULL ||
	    hlen != 32)
		return bk_err_kind(
		    err, BK_E_INTERNAL,
		    "cannot read key: stored id, hash, plan or overrides is invalid");
	memcpy(out->hash, hash, 32);
	out->created_ms = r->int64(r, 3);
	out->revoked_ms = r->int64(r, 4);
	return 0;
}

int store__session_from_row(const struct store__row *r, struct store_session *out,
			    struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	if (col_copy(r, 0, out->id, sizeof(out->id)) < 0 ||
	    col_copy(r, 1, out->key_id, sizeof(out->key_id)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read session: stored id or key id is invalid");
	int64_t state = r->int64(r, 5);
	if (!store__state_ok((int)state))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read session '%s': unknown state %lld", out->id,
				   (long long)state);
	int64_t vm = r->int64(r, 15);
	if (!store__vm_ok((int)vm))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read session '%s': unknown VM state %lld", out->id,
				   (long long)vm);
	size_t len;
	if (r->text(r, 11, &len) != NULL &&
	    col_copy(r, 11, out->public_id, sizeof(out->public_id)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read session '%s': bad public id",
				   out->id);
	out->metadata = col_dup(r, 6, "{}");
	out->env = col_dup(r, 13, "{}");
	out->network = col_dup(r, 22, "");
	if (out->metadata == NULL || out->env == NULL || out->network == NULL) {
		store_session_release(out);
		return bk_err_set(err, ENOMEM, "cannot read session '%s'", out->id);
	}
	out->created_ms = r->int64(r, 2);
	out->expires_ms = r->int64(r, 3);
	out->last_active_ms = r->int64(r, 4);
	out->state = (enum store_session_state)state;
	out->memory_mb = (int)r->int64(r, 7);
	out->cpu = r->real(r, 8);
	out->timeout_s = (int)r->int64(r, 9);
	out->disk_mb = (int)r->int64(r, 10);
	out->dialect = (int)r->int64(r, 12);
	out->vcpu = (int)r->int64(r, 14);
	out->vm_state = (enum store_vm_state)vm;
	out->vm_lifetime_s = r->int64(r, 16);
	out->vm_spawned_ms = r->int64(r, 17);
	out->vm_ends_ms = r->int64(r, 18);
	out->exec_count = r->int64(r, 19);
	out->cpu_ms = r->int64(r, 20);
	out->vm_runtime_ms = r->int64(r, 21);
	size_t olen = 0;
	const char *owner = r->text(r, 23, &olen);
	if (owner && olen < sizeof(out->owner)) {
		memcpy(out->owner, owner, olen);
		out->owner[olen] = '\0';
	}
	out->epoch = r->int64(r, 24);
	out->net_tx_bytes = r->int64(r, 25);
	out->net_rx_bytes = r->int64(r, 26);
	return 0;
}

int store__node_check(const struct store_node *n, struct bk_err *err)
{
	if (!store__str_ok(n->name, sizeof(n->name)) || n->name[0] == '\0' ||
	    !store__str_ok(n->advertise, sizeof(n->advertise)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot write node: unterminated or empty name");
	return 0;
}

int store__node_from_row(const struct store__row *r, struct store_node *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	if (col_copy(r, 0, out->name, sizeof(out->name)) < 0 ||
	    col_copy(r, 1, out->advertise, sizeof(out->advertise)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read a node: bad name or address");
	out->started_ms = r->int64(r, 2);
	out->renewed_ms = r->int64(r, 3);
	out->lease_ms = r->int64(r, 4);
	out->free_mb = r->int64(r, 5);
	out->awake = r->int64(r, 6);
	out->owned = r->int64(r, 7);
	return 0;
}

int store__task_from_row(const struct store__row *r, struct store_task *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	int64_t status = r->int64(r, 3);
	if (col_copy(r, 0, out->id, sizeof(out->id)) < 0 ||
	    col_copy(r, 1, out->session_id, sizeof(out->session_id)) < 0 ||
	    col_copy(r, 2, out->key_id, sizeof(out->key_id)) < 0 ||
	    !store__task_status_ok((int)status))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read task '%s': invalid row",
				   out->id);
	out->status = (enum store_task_status)status;
	out->out = blob_dup(r, 4, &out->out_len);
	out->err = blob_dup(r, 5, &out->err_len);
	if (out->out == NULL || out->err == NULL) {
		store_task_release(out);
		return bk_err_set(err, ENOMEM, "cannot read task '%s'", out->id);
	}
	out->exit_code = (int)r->int64(r, 6);
	out->execution_ms = r->int64(r, 7);
	out->cpu_ms = r->int64(r, 8);
	out->created_ms = r->int64(r, 9);
	out->finished_ms = r->int64(r, 10);
	return 0;
}

int store__idem_from_row(const struct store__row *r, struct store_idem *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t hlen = 0;
	const void *hash = r->blob(r, 2, &hlen);
	if (col_copy(r, 0, out->key_id, sizeof(out->key_id)) < 0 ||
	    col_copy(r, 1, out->idem_key, sizeof(out->idem_key)) < 0 ||
	    col_copy(r, 4, out->content_type, sizeof(out->content_type)) < 0 || hash == NULL ||
	    hlen != 32)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read idempotency key of key '%s': stored row is invalid",
				   out->key_id);
	memcpy(out->request_hash, hash, 32);
	out->body = blob_dup(r, 5, &out->body_len);
	if (out->body == NULL)
		return bk_err_set(err, errno, "cannot read idempotency key of key '%s'",
				  out->key_id);
	out->status = (int)r->int64(r, 3);
	out->created_ms = r->int64(r, 6);
	out->dropped_len = r->int64(r, 7);
	return 0;
}

void store__page_release(struct store__page *p)
{
	for (size_t i = 0; i < p->n; i++)
		store_session_release(&p->items[i]);
	free(p->items);
	p->items = NULL;
	p->n = p->cap = 0;
}

int store__page_add_row(struct store__page *p, const struct store__row *r, struct bk_err *err)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct store_session *items = reallocarray(p->items, cap, sizeof(*items));
		if (items == NULL)
			return bk_err_set(err, errno, "cannot list sessions");
		p->items = items;
		p->cap = cap;
	}
	if (store__session_from_row(r, &p->items[p->n], err) < 0)
		return -1;
	p->n++;
	return 0;
}

void store__page_steal(struct store__page *p, struct store_session **out, size_t *n)
{
	*n = p->n;
	*out = steal_ptr(&p->items);
	p->n = p->cap = 0;
}

int store__session_page(int (*row)(void *ctx, size_t i, struct store__row *r, struct bk_err *err),
			void *row_ctx, store_session_match match, void *ctx, int limit, int offset,
			struct store_session **out, size_t *n, int64_t *total, struct bk_err *err)
{
	/* The filter is core's, applied here row by row so that every store
	 * gives it the same meaning; a key's sessions are few (its plan caps
	 * the live ones), so reading them all is cheap. */
	_cleanup_page_ struct store__page page = {0};
	int64_t matched = 0;
	int64_t end = (int64_t)offset + limit;
	struct store__row r;
	int rc;
	for (size_t i = 0; (rc = row(row_ctx, i, &r, err)) == 1; i++) {
		if (match != NULL) {
			struct store_session s;
			if (store__session_from_row(&r, &s, err) < 0)
				return -1;
			bool ok = match(ctx, &s);
			store_session_release(&s);
			if (!ok)
				continue;
		}
		if (matched >= offset && matched < end && store__page_add_row(&page, &r, err) < 0)
			return -1;
		matched++;
	}
	if (rc < 0)
		return -1;
	*total = matched;
	store__page_steal(&page, out, n);
	return 0;
}
