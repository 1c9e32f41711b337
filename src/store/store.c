/* The choice of a store, and what the record types need whatever holds
 * them. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

int store_open(const char *uri, struct store **out, struct bk_err *err)
{
	if (strncmp(uri, "sqlite:", 7) == 0)
		return store_sqlite_open(uri + 7, out, err);
	if (strncmp(uri, "postgres://", 11) == 0 || strncmp(uri, "postgresql://", 13) == 0)
		return store_pg_open(uri, out, err);
	if (strstr(uri, "://") != NULL)
		return bk_err_field(err, "store",
				    "no store for '%s' (known: sqlite:PATH, postgres://...)", uri);
	return store_sqlite_open(uri, out, err);
}

void store_session_release(struct store_session *s)
{
	if (s == NULL)
		return;
	free(s->metadata);
	free(s->env);
	free(s->network);
	s->metadata = NULL;
	s->env = NULL;
	s->network = NULL;
}

void store_task_release(struct store_task *t)
{
	if (t == NULL)
		return;
	free(t->out);
	free(t->err);
	t->out = t->err = NULL;
	t->out_len = t->err_len = 0;
}

void store_idem_release(struct store_idem *r)
{
	if (r == NULL)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}
