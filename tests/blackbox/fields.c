/* Every field of every endpoint, missing, null and of a wrong type, is a
 * 400 invalid_request (buntime) or a 422 (InstaVM) that names exactly that
 * field, and never a 500: issue 12's finding that such bodies answered 500
 * with stack bytes in details.field. The requests carry a real session id
 * where the field at fault is another, so that each reaches the handler's
 * validation of that field.
 */
#include "../iv_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

CLIENT_FIXTURE(NULL)

/* A request's body or query; "SID" stands for a live session's id. */
struct field_case {
	const char *method, *path; /* path may hold "SID" too */
	const char *body;	   /* NULL: none */
	const char *field;	   /* the field the answer must name */
};

static const struct field_case buntime_cases[] = {
    /* POST /sessions/create: every field is optional; types are checked. */
    {"POST", "/sessions/create", "{\"ttl\":\"3600\"}", "ttl"},
    {"POST", "/sessions/create", "{\"ttl\":3600.5}", "ttl"},
    {"POST", "/sessions/create", "{\"ttl\":[1]}", "ttl"},
    {"POST", "/sessions/create", "{\"metadata\":[]}", "metadata"},
    {"POST", "/sessions/create", "{\"metadata\":\"m\"}", "metadata"},
    {"POST", "/sessions/create", "{\"resourceLimits\":5}", "resourceLimits"},
    {"POST", "/sessions/create", "{\"resourceLimits\":{\"memory\":\"512\"}}",
     "resourceLimits.memory"},
    {"POST", "/sessions/create", "{\"resourceLimits\":{\"cpu\":\"1\"}}", "resourceLimits.cpu"},
    {"POST", "/sessions/create", "{\"resourceLimits\":{\"timeout\":null,\"disk\":true}}",
     "resourceLimits.disk"},
    /* POST /execute */
    {"POST", "/execute", "{}", "sessionId"},
    {"POST", "/execute", "{\"sessionId\":null}", "sessionId"},
    {"POST", "/execute", "{\"command\":\"id\"}", "sessionId"},
    {"POST", "/execute", "{\"sessionId\":7,\"command\":\"id\"}", "sessionId"},
    {"POST", "/execute", "{\"sessionId\":[\"SID\"],\"command\":\"id\"}", "sessionId"},
    /* Neither code nor command: "exactly one of code and command". */
    {"POST", "/execute", "{\"sessionId\":\"SID\"}", "code"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":null,\"code\":null}", "code"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":5}", "command"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"code\":{}}", "code"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"timeout\":\"5\"}", "timeout"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"workingDir\":1}",
     "workingDir"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"stream\":\"yes\"}", "stream"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"env\":[]}", "env"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"env\":{\"A\":1}}", "env.A"},
    {"POST", "/execute", "{\"sessionId\":\"SID\",\"command\":\"id\",\"files\":{}}", "files"},
    {"POST", "/execute",
     "{\"sessionId\":\"SID\",\"command\":\"id\",\"files\":[{\"content\":\"x\"}]}", "files.path"},
    {"POST", "/execute",
     "{\"sessionId\":\"SID\",\"command\":\"id\",\"files\":[{\"path\":\"a\",\"content\":null}]}",
     "files.content"},
    /* POST /execution/kill */
    {"POST", "/execution/kill", "{}", "sessionId"},
    {"POST", "/execution/kill", "{\"sessionId\":null}", "sessionId"},
    {"POST", "/execution/kill", "{\"sessionId\":false}", "sessionId"},
    {"POST", "/execution/kill", "{\"sessionId\":\"SID\",\"pid\":\"12\"}", "pid"},
    /* POST /files/write */
    {"POST", "/files/write", "{\"path\":\"a\",\"content\":\"x\"}", "sessionId"},
    {"POST", "/files/write", "{\"sessionId\":1,\"path\":\"a\",\"content\":\"x\"}", "sessionId"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"content\":\"x\"}", "path"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"path\":null,\"content\":\"x\"}", "path"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"path\":[],\"content\":\"x\"}", "path"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"path\":\"a\"}", "content"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"path\":\"a\",\"content\":null}", "content"},
    {"POST", "/files/write", "{\"sessionId\":\"SID\",\"path\":\"a\",\"content\":3}", "content"},
    {"POST", "/files/write",
     "{\"sessionId\":\"SID\",\"path\":\"a\",\"content\":\"x\",\"encoding\":1}", "encoding"},
    /* POST /files/delete */
    {"POST", "/files/delete", "{\"path\":\"a\"}", "sessionId"},
    {"POST", "/files/delete", "{\"sessionId\":{},\"path\":\"a\"}", "sessionId"},
    {"POST", "/files/delete", "{\"sessionId\":\"SID\"}", "path"},
    {"POST", "/files/delete", "{\"sessionId\":\"SID\",\"path\":null}", "path"},
    {"POST", "/files/delete", "{\"sessionId\":\"SID\",\"path\":2}", "path"},
    {"POST", "/files/delete", "{\"sessionId\":\"SID\",\"path\":\"a\",\"recursive\":\"true\"}",
     "recursive"},
    /* The query endpoints. */
    {"GET", "/files/read?path=a", NULL, "sessionId"},
    {"GET", "/files/read?sessionId=&path=a", NULL, "sessionId"},
    {"GET", "/files/read?sessionId=SID", NULL, "path"},
    {"GET", "/files/list", NULL, "sessionId"},
    {"GET", "/files/list?sessionId=SID&recursive=maybe", NULL, "recursive"},
    {"GET", "/files/list?sessionId=SID&limit=x", NULL, "limit"},
    {"GET", "/execution/processes", NULL, "sessionId"},
};

static const struct field_case instavm_cases[] = {
    {"POST", "/execute", "{\"session_id\":null,\"command\":\"1\"}", "session_id"},
    {"POST", "/execute", "{\"session_id\":1,\"command\":\"1\"}", "session_id"},
    {"POST", "/execute", "{\"session_id\":\"SID\"}", "command"},
    {"POST", "/execute", "{\"session_id\":\"SID\",\"command\":null}", "command"},
    {"POST", "/execute", "{\"session_id\":\"SID\",\"command\":1}", "command"},
    {"POST", "/execute",
     "{\"session_id\":\"SID\",\"command\":\"1\",\"language\":null,\"timeout\":[]}", "timeout"},
    {"POST", "/execute_async", "{\"session_id\":null,\"command\":\"1\"}", "session_id"},
    {"POST", "/execute_async", "{\"session_id\":\"SID\"}", "command"},
    {"POST", "/execute_async", "{\"session_id\":\"SID\",\"command\":\"1\",\"language\":{}}",
     "language"},
    {"POST", "/kill", "{}", "session_id"},
    {"POST", "/kill", "{\"session_id\":null}", "session_id"},
    {"POST", "/kill", "{\"session_id\":3}", "session_id"},
    {"POST", "/download", "{\"session_id\":\"SID\"}", "filename"},
    {"POST", "/download", "{\"session_id\":\"SID\",\"filename\":null}", "filename"},
    {"POST", "/download", "{\"filename\":\"a\"}", "session_id"},
    {"POST", "/download", "{\"filename\":\"a\",\"session_id\":[]}", "session_id"},
    {"POST", "/v1/sessions/session", "{\"vm_lifetime_seconds\":null,\"memory_mb\":\"1\"}",
     "memory_mb"},
    {"POST", "/v1/sessions/session", "{\"env\":{\"A\":null}}", "env.A"},
    {"POST", "/v1/egress/session/SID", "{\"allow_http\":1}", "allow_http"},
    {"POST", "/v1/egress/session/SID", "{\"allowed_domains\":\"x\"}", "allowed_domains"},
};

/* s with every "SID" replaced by id (caller frees). */
static char *with_id(const char *s, const char *id)
{
	size_t cap = strlen(s) * 2 + 256;
	char *out = malloc(cap);
	CHECK(out != NULL);
	size_t o = 0;
	for (const char *p = s; *p;) {
		if (strncmp(p, "SID", 3) == 0) {
			o += (size_t)snprintf(out + o, cap - o, "%s", id);
			p += 3;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return out;
}

TEST(buntime_every_field_is_named)
{
	char *id = client_must_create(bk.paid_key, NULL);
	for (size_t i = 0; i < sizeof(buntime_cases) / sizeof(buntime_cases[0]); i++) {
		const struct field_case *fc = &buntime_cases[i];
		char *path = with_id(fc->path, id);
		char *body = fc->body ? with_id(fc->body, id) : NULL;
		struct client_resp r;
		client_call(&bk.d, fc->method, path, bk.paid_key, body, &r);
		if (r.status != 400)
			fprintf(stderr, "    %s %s %s\n", fc->method, path, body ? body : "");
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", fc->field);
		/* details.field is the field's name and nothing else. */
		const char *f = json_string_value(json_object_get(
		    json_object_get(json_object_get(r.json, "error"), "details"), "field"));
		CHECK_MSG(f && strcmp(f, fc->field) == 0, "%s %s %s: details.field is '%s' in %s",
			  fc->method, path, body ? body : "", f ? f : "(none)", r.body);
		client_resp_free(&r);
		free(path);
		free(body);
	}
	/* None of them ran anything, wrote a file or made a session. */
	struct client_resp r;
	client_call(&bk.d, "GET", "/sessions", bk.paid_key, NULL, &r);
	CHECK_INT_EQ(client_must_int(r.json, "total", r.body), 1);
	client_resp_free(&r);
	char path[256];
	snprintf(path, sizeof(path), "/files/list?sessionId=%s", id);
	client_call(&bk.d, "GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 0);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(instavm_every_field_is_named)
{
	char *id = iv_create(bk.paid_key, NULL);
	for (size_t i = 0; i < sizeof(instavm_cases) / sizeof(instavm_cases[0]); i++) {
		const struct field_case *fc = &instavm_cases[i];
		char *path = with_id(fc->path, id);
		char *body = fc->body ? with_id(fc->body, id) : NULL;
		struct client_resp r;
		iv(fc->method, path, bk.paid_key, body, &r);
		if (r.status != 422)
			fprintf(stderr, "    %s %s %s\n", fc->method, path, body ? body : "");
		CHECK_422(&r, fc->field);
		client_resp_free(&r);
		free(path);
		free(body);
	}
	/* None of them spawned the VM. */
	json_t *st = iv_get("status", id, bk.paid_key);
	CHECK(json_is_null(json_object_get(st, "vm_status")));
	json_decref(st);
	free(id);
}
