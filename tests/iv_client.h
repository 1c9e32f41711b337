/* Requests of the InstaVM dialect for the black-box tests, as InstaVM's
 * Python SDK sends them: the key in X-API-Key (or only in the create
 * body), FastAPI's error shapes checked, multipart uploads and form
 * downloads. Requests go to iv_daemon, the fixture's daemon when NULL. */
#pragma once

#include "client.h"

#define NO_UUID "3f2b1c1e-0000-4000-8000-000000000000"
#define IV_BOUNDARY "bunkerTestBoundary7MA4YWxk"

/* The daemon requests go to (NULL: bk.d). */
extern const struct client_daemon *iv_daemon;

/* A request: key (may be NULL) in X-API-Key, body (len 0: strlen) of
 * content type ctype (NULL: JSON, or no body when body is NULL). */
void iv_req(const char *method, const char *path, const char *key, const char *body, size_t len,
	    const char *ctype, struct client_resp *r);
/* The same with a JSON text body (or none). */
void iv(const char *method, const char *path, const char *key, const char *body,
	struct client_resp *r);
/* POST path with body (a new reference, taken). */
void iv_take(const char *path, const char *key, json_t *body, struct client_resp *r);

/* Creates a session as the SDK does (the key in the body, no header);
 * extra (taken, may be NULL) adds fields. Fails the test unless 200;
 * returns the session id (caller frees). */
#define iv_create(key, extra) iv_create_at(__LINE__, key, extra)
char *iv_create_at(int line, const char *key, json_t *extra);
/* GET /v1/sessions/<what>/<id>; fails unless 200. A new reference. */
json_t *iv_get(const char *what, const char *id, const char *key);

/* Checks the 422's detail entries (each with loc, msg and type); returns
 * how many there are, and in *found whether one has loc ["body", field]
 * (["body"] when field is ""). */
size_t iv_detail_has(const struct client_resp *r, const char *field, bool *found);
/* A 422 with an entry for body.<field>. */
#define CHECK_422(r, field) iv_check_422_at(__LINE__, r, field)
void iv_check_422_at(int line, const struct client_resp *r, const char *field);
/* {"detail": "..."} with status want. */
#define CHECK_DETAIL(r, want) iv_check_detail_at(__LINE__, r, want)
void iv_check_detail_at(int line, const struct client_resp *r, long want);

/* A part of a multipart/form-data body (a NULL name ends a list). */
struct iv_part {
	const char *name, *filename, *content;
	size_t len; /* 0: strlen(content) */
};
/* The body of parts with boundary IV_BOUNDARY (caller frees). */
char *iv_form_multipart(const struct iv_part *parts, size_t *len);
/* POST /upload of parts. */
void iv_upload(const char *key, const struct iv_part *parts, struct client_resp *r);
/* POST /upload as the SDK sends it: the text parts, then the file
 * (content of len bytes, 0: strlen) with a local path as its filename. */
void iv_upload_file(const char *key, const char *id, const char *remote, const char *content,
		    size_t len, struct client_resp *r);
/* POST /download with the SDK's form body. */
void iv_download(const char *key, const char *id, const char *filename, struct client_resp *r);
/* The same, which must succeed: the content decoded (caller frees), its
 * length in *len. */
char *iv_download_ok(const char *key, const char *id, const char *filename, size_t *len);
