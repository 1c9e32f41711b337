/* What the files of the InstaVM dialect share (api/instavm.c: errors,
 * sessions, VMs, previews; api/instavm_exec.c: executions and files). */
#pragma once

#include "api/api_int.h"

/* FastAPI's shapes: a request that fails validation is 422 with
 * {"detail": [{"loc": [...], "msg", "type"}, ...]}, one entry per field at
 * fault (err's first and its more); every other error is {"detail": "..."}. */
void instavm_error(struct api_call *c, const struct bk_err *err);
/* Whether s has the form of a session id: a UUID, or "ses_" and 20 of
 * [a-z0-9]. */
bool instavm_id_form(const char *s);
/* A time as InstaVM writes it: ISO 8601 in UTC without a zone
 * ("2026-12-02T03:45:12.123000"), into buf (>= 40 bytes). */
void instavm_time(int64_t ms, char *buf, size_t len);
/* The session id of a JSON body's session_id: 0 with *out (borrowed), or
 * -1 with a 422 entry added to err. */
int instavm_body_session(json_t *body, const char **out, struct bk_err *err);
/* An integer member name of body, min..max: 1 with *out, 0 when absent or
 * null, -1 with a 422 entry added to err. */
int instavm_int_field(json_t *body, const char *name, int64_t min, int64_t max, int64_t *out,
		      struct bk_err *err);
/* The value of field name of an application/x-www-form-urlencoded body
 * ('+' is a space, %XX decoded) into *out, a new string: 1 when found, 0
 * when absent, -1 when it holds a NUL or is not UTF-8. */
int instavm_form_get(const char *body, size_t len, const char *name, char **out);

/* The request parsers, non-static so that tests/fuzz/instavm.c reaches
 * them without HTTP: */

/* POST /v1/sessions/session's body (but its api_key) into *spec, every
 * field at fault its own 422 entry in err (-1). *metadata (compact JSON)
 * and *env (names and values borrowed from body) are malloc'd, also on
 * failure: the caller frees them. */
int instavm__create_parse(json_t *body, struct core_session_spec *spec, char **metadata,
			  struct core_env **env, struct bk_err *err);

/* The body of /execute and /execute_async, every field at fault named
 * (unknown fields, vault_ids among them, are ignored); strings borrowed
 * from the body. */
struct iv_exec {
	const char *id;
	const char *code;
	enum core_language language;
	int64_t timeout_s;
};
int instavm__exec_parse(json_t *body, struct iv_exec *x, struct bk_err *err);

/* Routes of api/instavm_exec.c. */
void instavm_execute(struct api_call *c);
void instavm_execute_async(struct api_call *c);
void instavm_execution_get(struct api_call *c);
void instavm_download(struct api_call *c);
/* api/instavm_upload.c */
void instavm_upload(struct api_call *c);
/* Whether POST /execute is InstaVM's: its body names session_id and not
 * buntime's sessionId. */
bool instavm_claims_execute(struct api_call *c);
