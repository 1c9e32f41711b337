/* POST /upload of the InstaVM dialect: a multipart/form-data body with the
 * text parts remote_path, session_id and recursive ("true"/"false") and
 * one file part (its filename, the client's local path, is ignored). The
 * file part is passed into the session as it arrives (api/multipart.c,
 * core_upload_*()), so the daemon never holds it whole; it takes its name
 * only once the whole body came and every part was valid, so that a body
 * refused half-way leaves the old file as it was.
 *
 * The text parts must come before the file part (Python's requests, which
 * InstaVM's SDK uses, sends them first; `curl -F` sends them in the order
 * given): the file's bytes go straight to the session that session_id
 * names, at the path remote_path names. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/instavm_int.h"
#include "api/multipart.h"

#define UPLOAD_PATH_MAX 4096
#define UPLOAD_ID_MAX 64
/* The most of a body kept to be sent on to another node, until its file
 * part begins: its text parts and their heads. */
#define UPLOAD_KEPT_MAX (256u << 10)

enum upload_part {
	PART_IGNORED = 0, /* an unknown name: dropped */
	PART_REMOTE_PATH,
	PART_SESSION_ID,
	PART_RECURSIVE,
	PART_FILE,
};

struct upload {
	struct api_call *c;
	struct mp_parser mp;
	enum upload_part part;
	/* The text parts, NUL-terminated as they grow; seen once each. */
	char remote_path[UPLOAD_PATH_MAX + 1];
	char session_id[UPLOAD_ID_MAX + 1];
	char recursive[8];
	size_t part_len;
	unsigned seen; /* 1u << enum upload_part */
	struct core_upload *up;
	bool file_done;
	/* For another node's session (api/cluster.c): the raw body so far,
	 * kept until the file part begins, then the hop that takes it and
	 * every byte after. */
	struct buf kept;
	bool kept_short; /* more came than UPLOAD_KEPT_MAX before the file */
	struct http_forward *fwd;
	/* What of the client budget the upload holds (its request's charge,
	 * api/router.c): what is kept and what core_upload_held() says. */
	size_t charged;
};

static int text_field(struct upload *u, char *dst, size_t max, const char *field, const char *d,
		      size_t n, struct bk_err *err)
{
	if (u->part_len + n > max)
		return bk_err_add(err, field, "string_too_long",
				  "String should have at most %zu characters", max);
	if (memchr(d, '\0', n))
		return bk_err_add(err, field, "string_type",
				  "Input should be text without NUL bytes");
	memcpy(dst + u->part_len, d, n);
	u->part_len += n;
	dst[u->part_len] = '\0';
	return 0;
}

static int on_begin(void *user, const char *name, const char *filename, struct bk_err *err)
{
	struct upload *u = user;
	static const struct {
		const char *name;
		enum upload_part part;
	} names[] = {{"remote_path", PART_REMOTE_PATH},
		     {"session_id", PART_SESSION_ID},
		     {"recursive", PART_RECURSIVE},
		     {"file", PART_FILE}};
	u->part = PART_IGNORED;
	u->part_len = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i].name) == 0)
			u->part = names[i].part;
	if (u->part == PART_IGNORED)
		return 0;
	char loc[32];
	snprintf(loc, sizeof(loc), "body.%s", name);
	if (u->seen & (1u << u->part))
		return bk_err_add(err, loc, "value_error", "Field given more than once");
	u->seen |= 1u << u->part;
	if (u->part != PART_FILE)
		return 0;
	if (!(u->seen & (1u << PART_SESSION_ID)) || u->session_id[0] == '\0')
		bk_err_add(err, "body.session_id", "missing",
			   "Field required before the file part");
	if (!(u->seen & (1u << PART_REMOTE_PATH)) || u->remote_path[0] == '\0')
		bk_err_add(err, "body.remote_path", "missing",
			   "Field required before the file part");
	if (bk_err_is_set(err))
		return -1;
	(void)filename;
	if (!instavm_id_form(u->session_id))
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", u->session_id);
	/* Another node's: the body goes there as it came (the parser stops
	 * here; upload_write() sends what was kept). */
	int hop = api_cluster_upload_hop(u->c, u->session_id, &u->fwd, err);
	if (hop != 0) {
		if (hop > 0 && u->kept_short) {
			http_forward_free(u->fwd);
			u->fwd = NULL;
			return bk_err_kind(err, BK_E_UNAVAILABLE,
					   "session '%s' is on another node, and the parts before "
					   "the file are over %u bytes: too many to send on",
					   u->session_id, UPLOAD_KEPT_MAX);
		}
		return -1;
	}
	if (core_upload_begin(u->c->api->core, &u->c->key, u->session_id, u->remote_path, &u->up,
			      err) < 0) {
		if (err->kind == BK_E_INVALID)
			snprintf(err->field, sizeof(err->field), "body.remote_path");
		return -1;
	}
	return 0;
}

static int on_data(void *user, const char *d, size_t n, struct bk_err *err)
{
	struct upload *u = user;
	switch (u->part) {
	case PART_IGNORED:
		return 0;
	case PART_REMOTE_PATH:
		return text_field(u, u->remote_path, UPLOAD_PATH_MAX, "body.remote_path", d, n,
				  err);
	case PART_SESSION_ID:
		return text_field(u, u->session_id, UPLOAD_ID_MAX, "body.session_id", d, n, err);
	case PART_RECURSIVE:
		return text_field(u, u->recursive, sizeof(u->recursive) - 1, "body.recursive", d, n,
				  err);
	case PART_FILE:
		return core_upload_write(u->up, d, n, err);
	}
	return 0;
}

static int on_end(void *user, struct bk_err *err)
{
	struct upload *u = user;
	if (u->part == PART_SESSION_ID)
		snprintf(u->c->session_id, sizeof(u->c->session_id), "%s", u->session_id);
	if (u->part == PART_RECURSIVE && strcmp(u->recursive, "true") != 0 &&
	    strcmp(u->recursive, "false") != 0)
		return bk_err_add(err, "body.recursive", "bool_parsing",
				  "Input should be 'true' or 'false'");
	if (u->part == PART_FILE)
		u->file_done = true;
	return 0;
}

static const struct mp_events upload_events = {on_begin, on_data, on_end};

/* ---- the request ---- */

static int upload_charge(struct upload *u, struct bk_err *err);

/* At the head: a new upload, or NULL with err. */
static struct upload *upload_new(struct api_call *c, struct bk_err *err)
{
	struct upload *u = calloc(1, sizeof(*u));
	if (u == NULL) {
		bk_err_set(err, ENOMEM, "cannot start the upload");
		return NULL;
	}
	u->c = c;
	buf_init(&u->kept, UPLOAD_KEPT_MAX);
	const char *ct = http_header(c->req, "Content-Type");
	if (mp_parser_init(&u->mp, ct, "body", &upload_events, u, err) < 0) {
		free(u);
		return NULL;
	}
	if (upload_charge(u, err) < 0) {
		mp_parser_release(&u->mp);
		free(u);
		return NULL;
	}
	return u;
}

/* Charges u's request for what u holds now (given back as it holds less):
 * -1 with err once its client may hold no more. The parser's window is
 * held from the head on; a hop to another node charged its buffers when
 * it opened (api/cluster.c). */
static int upload_charge(struct upload *u, struct bk_err *err)
{
	size_t held = MP_PARSER_HELD + u->kept.len + (u->up ? core_upload_held(u->up) : 0);
	struct budget_charge *charge = u->c->plan_charge;
	if (held < u->charged) {
		budget_charge_give(charge, u->charged - held);
		u->charged = held;
		return 0;
	}
	enum budget_limit over = budget_charge_take_all(charge, held - u->charged);
	if (over != BUDGET_OK)
		return api_over_budget(u->c, over, err);
	u->charged = held;
	return 0;
}

static int upload_write(void *state, const char *data, size_t len, struct bk_err *err)
{
	struct upload *u = state;
	if (u->fwd)
		return http_forward_body(u->fwd, data, len, err);
	/* Until the file part says where the body goes, it may go to another
	 * node: kept (its text parts are small). */
	if (u->up == NULL && !u->kept_short &&
	    (buf_append(&u->kept, data, len) < 0 || u->kept.truncated)) {
		u->kept_short = true;
		buf_free(&u->kept);
	}
	int rc = mp_parser_feed(&u->mp, data, len, err);
	if (rc < 0 && u->fwd) {
		/* Relayed from here: what was kept, this piece included. */
		bk_err_clear(err);
		rc = http_forward_body(u->fwd, u->kept.data, u->kept.len, err);
	}
	if (u->up || u->fwd)
		buf_free(&u->kept);
	if (rc == 0 && upload_charge(u, err) < 0)
		rc = -1;
	return rc;
}

/* The body is over: answers c, frees u. */
static void upload_finish(struct api_call *c, void *state, enum http_body_end end,
			  const struct bk_err *failed)
{
	struct upload *u = state;
	struct bk_err err = BK_ERR_INIT;
	buf_free(&u->kept);
	budget_charge_give(c->plan_charge, u->charged);
	if (u->fwd && end == HTTP_BODY_COMPLETE) {
		struct http_forward *f = u->fwd;
		mp_parser_release(&u->mp);
		free(u);
		if (http_forward_answer(f, c->res, &err) == 0)
			return;
		return instavm_error(c, &err);
	}
	http_forward_free(u->fwd);
	u->fwd = NULL;
	switch (end) {
	case HTTP_BODY_COMPLETE:
		if (mp_parser_finish(&u->mp, &err) == 0 && !u->file_done)
			bk_err_add(&err, "body.file", "missing", "Field required");
		break;
	case HTTP_BODY_TOO_LARGE:
		bk_err_kind(&err, BK_E_TOO_LARGE,
			    "the request body is over this endpoint's limit of %zu bytes",
			    api_route_body_limit(c));
		break;
	case HTTP_BODY_REFUSED:
		err = *failed;
		break;
	case HTTP_BODY_CLIENT_GONE:
		bk_err_kind(&err, BK_E_INVALID, "the client left before the end of its upload");
		break;
	}
	int64_t size = 0;
	/* The file takes its name only when all of the body was right. */
	int rc = core_upload_end(u->up, !bk_err_is_set(&err), &size, &err);
	mp_parser_release(&u->mp);
	if (rc < 0 || bk_err_is_set(&err)) {
		free(u);
		return instavm_error(c, &err);
	}
	api_json(c, 200,
		 json_pack("{s:s,s:s,s:I}", "status", "success", "remote_path", u->remote_path,
			   "size", (json_int_t)size));
	free(u);
}

static const struct api_body_stream upload_stream = {
    .write = upload_write,
    .finish = upload_finish,
};

/* At the head, once the key passed: the body goes to the parser as it
 * comes. */
void instavm_upload(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	struct upload *u = upload_new(c, &err);
	if (u == NULL)
		return instavm_error(c, &err);
	api_body_stream(c, &upload_stream, u);
}
