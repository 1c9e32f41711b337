/* InstaVM requests of the black-box tests (see iv_client.h). */
#include "iv_client.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct client_daemon *iv_daemon;

/* A request of the dialect: key (may be NULL) in X-API-Key, body JSON
 * text or NULL, or a body of content type ctype. */
void iv_req(const char *method, const char *path, const char *key, const char *body, size_t len,
	    const char *ctype, struct client_resp *r)
{
	char kh[CLIENT_KEY_MAX + 16], ch[256];
	const char *headers[3] = {NULL};
	int n = 0;
	if (key) {
		snprintf(kh, sizeof(kh), "X-API-Key: %s", key);
		headers[n++] = kh;
	}
	if (ctype) {
		snprintf(ch, sizeof(ch), "Content-Type: %s", ctype);
		headers[n++] = ch;
	}
	struct client_req req = {.method = method,
				 .path = path,
				 .body = body,
				 .body_len = body ? (len ? len : strlen(body)) : 0,
				 .headers = headers,
				 .timeout_s = 120};
	client_request(iv_daemon ? iv_daemon : &bk.d, &req, r);
}

void iv(const char *method, const char *path, const char *key, const char *body,
	struct client_resp *r)
{
	iv_req(method, path, key, body, 0, NULL, r);
}

void iv_take(const char *path, const char *key, json_t *body, struct client_resp *r)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	iv("POST", path, key, text, r);
	free(text);
}

/* Creates a session as the SDK does (the key in the body, no header);
 * extra (taken, may be NULL) adds fields. Returns its id (caller frees). */
char *iv_create_at(int line, const char *key, json_t *extra)
{
	json_t *body = extra ? extra : json_object();
	json_object_set_new(body, "api_key", json_string(key));
	struct client_resp r;
	iv_take("/v1/sessions/session", NULL, body, &r);
	if (r.status != 200)
		fprintf(stderr, "    (create at line %d)\n", line);
	CHECK_STATUS(&r, 200);
	char *id = strdup(client_must_str(r.json, "session_id", r.body));
	client_resp_free(&r);
	return id;
}

json_t *iv_get(const char *what, const char *id, const char *key)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/sessions/%s/%s", what, id);
	struct client_resp r;
	iv("GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *o = json_incref(r.json);
	client_resp_free(&r);
	return o;
}

/* The 422's detail entries: each must have loc, msg, type; returns how
 * many there are and whether one has loc ["body", field] (["body"] when
 * field is ""). */
size_t iv_detail_has(const struct client_resp *r, const char *field, bool *found)
{
	json_t *d = json_object_get(r->json, "detail");
	CHECK_MSG(json_is_array(d), "detail is not a list in %s", r->body);
	*found = false;
	size_t i;
	json_t *e;
	json_array_foreach (d, i, e) {
		json_t *loc = json_object_get(e, "loc");
		CHECK_MSG(json_is_array(loc) && json_is_string(json_object_get(e, "msg")) &&
			      json_is_string(json_object_get(e, "type")),
			  "entry %zu of %s lacks loc, msg or type", i, r->body);
		/* loc ["body", "env", "A"] is field "env.A". */
		char joined[256] = "";
		size_t o = 0;
		for (size_t k = 1; k < json_array_size(loc) && o < sizeof(joined); k++)
			o += (size_t)snprintf(joined + o, sizeof(joined) - o, "%s%s",
					      k > 1 ? "." : "",
					      json_is_string(json_array_get(loc, k))
						  ? json_string_value(json_array_get(loc, k))
						  : "?");
		const char *l0 = json_string_value(json_array_get(loc, 0));
		if (l0 && strcmp(l0, "body") == 0 && strcmp(joined, field) == 0)
			*found = true;
	}
	return json_array_size(d);
}

void iv_check_422_at(int line, const struct client_resp *r, const char *field)
{
	if (r->status != 422)
		fprintf(stderr, "    (line %d)\n", line);
	CHECK_STATUS(r, 422);
	bool found;
	iv_detail_has(r, field, &found);
	CHECK_MSG(found, "line %d: no entry for body.%s in %s", line, field, r->body);
}

/* {"detail": "..."} with status want. */
void iv_check_detail_at(int line, const struct client_resp *r, long want)
{
	if (r->status != want)
		fprintf(stderr, "    (line %d)\n", line);
	CHECK_STATUS(r, want);
	CHECK_MSG(json_is_string(json_object_get(r->json, "detail")),
		  "line %d: detail is not a string in %s", line, r->body);
}

/* ---- multipart ---- */

/* A multipart/form-data body of parts (a NULL name ends them); caller
 * frees. */
char *iv_form_multipart(const struct iv_part *parts, size_t *len)
{
	size_t cap = 4096;
	for (const struct iv_part *p = parts; p->name; p++)
		cap += (p->len ? p->len : strlen(p->content)) + 512;
	char *b = malloc(cap);
	CHECK(b != NULL);
	size_t n = 0;
	for (const struct iv_part *p = parts; p->name; p++) {
		n += (size_t)snprintf(
		    b + n, cap - n,
		    "--" IV_BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"", p->name);
		if (p->filename)
			n += (size_t)snprintf(b + n, cap - n, "; filename=\"%s\"", p->filename);
		n += (size_t)snprintf(b + n, cap - n, "\r\n%s\r\n",
				      p->filename ? "Content-Type: application/octet-stream\r\n"
						  : "");
		size_t cl = p->len ? p->len : strlen(p->content);
		memcpy(b + n, p->content, cl);
		n += cl;
		memcpy(b + n, "\r\n", 2);
		n += 2;
	}
	n += (size_t)snprintf(b + n, cap - n, "--" IV_BOUNDARY "--\r\n");
	*len = n;
	return b;
}

void iv_upload(const char *key, const struct iv_part *parts, struct client_resp *r)
{
	size_t len;
	char *body = iv_form_multipart(parts, &len);
	iv_req("POST", "/upload", key, body, len, "multipart/form-data; boundary=" IV_BOUNDARY, r);
	free(body);
}

/* An upload as the SDK sends it: text parts first, then the file. */
void iv_upload_file(const char *key, const char *id, const char *remote, const char *content,
		    size_t len, struct client_resp *r)
{
	const struct iv_part parts[] = {{"remote_path", NULL, remote},
					{"session_id", NULL, id},
					{"recursive", NULL, "false"},
					{"file", "/home/user/project/local name.bin", content, len},
					{NULL}};
	iv_upload(key, parts, r);
}

/* POST /download with a form body; the content decoded into *out. */
void iv_download(const char *key, const char *id, const char *filename, struct client_resp *r)
{
	char *f = client_urlencode(filename), *s = client_urlencode(id);
	char body[8192];
	snprintf(body, sizeof(body), "filename=%s&session_id=%s", f, s);
	free(f);
	free(s);
	iv_req("POST", "/download", key, body, 0, "application/x-www-form-urlencoded", r);
}

char *iv_download_ok(const char *key, const char *id, const char *filename, size_t *len)
{
	struct client_resp r;
	iv_download(key, id, filename, &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_must_str(r.json, "status", r.body), "success");
	const char *b64 = client_must_str(r.json, "content", r.body);
	size_t cap = strlen(b64) + 1;
	char *out = malloc(cap);
	CHECK(out != NULL);
	CHECK_MSG(sodium_base642bin((unsigned char *)out, cap, b64, strlen(b64), NULL, len, NULL,
				    sodium_base64_VARIANT_ORIGINAL) == 0,
		  "content is not padded standard base64: %s", r.body);
	CHECK_INT_EQ(client_must_int(r.json, "size", r.body), (long long)*len);
	out[*len] = '\0';
	client_resp_free(&r);
	return out;
}
