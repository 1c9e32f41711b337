/* Black-box tests of the buntime dialect's files endpoints: POST
 * /files/write, GET /files/read, GET /files/list and POST /files/delete,
 * with paths that leave the workspace (through "..", absolute paths and
 * symlinks), the plans' file-size limits, a full disk, paging, ownership,
 * filesCount, and bad input, against one real bunkerd shared by every test.
 * Each test uses fresh sessions and deletes them when it passes.
 */
#include "../client.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

/* ---- helpers ---- */

#define MIB ((size_t)1 << 20)
#define NO_SESSION "ses_aaaaaaaaaaaaaaaaaaaa"

static char *new_session(void)
{
	return client_must_create(bk.paid_key, NULL);
}

static void end_session(const char *key, char *id)
{
	client_must_delete(key, id);
	free(id);
}

/* POST path with a raw body (len 0: strlen). */
static void post_raw(const char *key, const char *path, const char *body, size_t len,
		     struct client_resp *r)
{
	struct client_req req = {.method = "POST",
				 .path = path,
				 .key = key,
				 .body = body,
				 .body_len = len ? len : strlen(body),
				 .timeout_s = 120};
	client_request(&bk.d, &req, r);
}

/* POST path with body (a new reference, taken). */
static void post_take(const char *key, const char *path, json_t *body, struct client_resp *r)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	CHECK(text != NULL);
	post_raw(key, path, text, strlen(text), r);
	free(text);
}

/* POST /files/write; enc may be NULL (not sent). */
static void fwrite_call(const char *key, const char *id, const char *path, const char *content,
			const char *enc, struct client_resp *r)
{
	json_t *body =
	    json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", path, "content", content);
	if (enc != NULL)
		json_object_set_new(body, "encoding", json_string(enc));
	post_take(key, "/files/write", body, r);
}

/* Writes a file that must succeed with {path, size}. */
#define fwrite_ok(key, id, path, content, enc) fwrite_ok_at(__LINE__, key, id, path, content, enc)
static void fwrite_ok_at(int line, const char *key, const char *id, const char *path,
			 const char *content, const char *enc)
{
	struct client_resp r;
	fwrite_call(key, id, path, content, enc, &r);
	if (r.status != 200)
		fprintf(stderr, "    (write of '%s' from line %d)\n", path, line);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(client_json_str(r.json, "path") != NULL, "no path in %s", r.body);
	CHECK_MSG(json_is_integer(json_object_get(r.json, "size")), "no size in %s", r.body);
	client_resp_free(&r);
}

/* GET /files/read. */
static void fread_call(const char *key, const char *id, const char *path, struct client_resp *r)
{
	char *eid = client_urlencode(id);
	char *ep = path ? client_urlencode(path) : NULL;
	char url[8192];
	if (ep)
		snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=%s", eid, ep);
	else
		snprintf(url, sizeof(url), "/files/read?sessionId=%s", eid);
	free(eid);
	free(ep);
	client_call(&bk.d, "GET", url, key, NULL, r);
}

/* GET /files/list?sessionId=id&<query>. */
static void flist_call(const char *key, const char *id, const char *query, struct client_resp *r)
{
	char *eid = client_urlencode(id);
	char url[8192];
	snprintf(url, sizeof(url), "/files/list?sessionId=%s%s%s", eid, query && *query ? "&" : "",
		 query ? query : "");
	free(eid);
	client_call(&bk.d, "GET", url, key, NULL, r);
}

/* POST /files/delete; recursive < 0: not sent. */
static void fdelete_call(const char *key, const char *id, const char *path, int recursive,
			 struct client_resp *r)
{
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "path", path);
	if (recursive >= 0)
		json_object_set_new(body, "recursive", json_boolean(recursive));
	post_take(key, "/files/delete", body, r);
}

static long long int_of(const struct client_resp *r, const json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	CHECK_MSG(json_is_integer(v), "'%s' is not an integer in %.2000s", name, r->body);
	return json_integer_value(v);
}

static const char *str_of(const struct client_resp *r, const json_t *obj, const char *name)
{
	const char *s = client_json_str(obj, name);
	CHECK_MSG(s != NULL, "'%s' is not a string in %.2000s", name, r->body);
	return s;
}

/* A listed path names rel ("a/b.txt"; "/workspace/a/b.txt" is the same). */
static bool path_is(const char *got, const char *rel)
{
	if (strcmp(got, rel) == 0)
		return true;
	return strncmp(got, "/workspace/", 11) == 0 && strcmp(got + 11, rel) == 0;
}

/* The listing's paths, one per line ("" when none), with "/workspace/"
 * dropped; the caller frees. Checks every entry's shape on the way. */
static char *list_paths(const struct client_resp *r)
{
	json_t *files = json_object_get(r->json, "files");
	CHECK_MSG(json_is_array(files), "no files array: %.2000s", r->body);
	size_t cap = 1, i;
	json_t *e;
	json_array_foreach (files, i, e)
		cap += strlen(str_of(r, e, "path")) + 1;
	char *out = calloc(1, cap);
	json_array_foreach (files, i, e) {
		const char *p = str_of(r, e, "path");
		if (strncmp(p, "/workspace/", 11) == 0)
			p += 11;
		strcat(out, p);
		strcat(out, "\n");
		const char *type = str_of(r, e, "type");
		CHECK_MSG(strcmp(type, "file") == 0 || strcmp(type, "directory") == 0,
			  "type '%s' in %.2000s", type, r->body);
		CHECK_MSG(int_of(r, e, "size") >= 0, "negative size in %.2000s", r->body);
		double t;
		CHECK_MSG(client_parse_time(str_of(r, e, "modified"), &t),
			  "modified '%s' is not ISO 8601 with Z", str_of(r, e, "modified"));
	}
	return out;
}

/* The entry of the listing named rel, or NULL. */
static json_t *list_entry(const struct client_resp *r, const char *rel)
{
	json_t *files = json_object_get(r->json, "files");
	size_t i;
	json_t *e;
	json_array_foreach (files, i, e) {
		const char *p = client_json_str(e, "path");
		if (p != NULL && path_is(p, rel))
			return e;
	}
	return NULL;
}

static long long session_files_count(const char *key, const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	long long n = int_of(&r, r.json, "filesCount");
	client_resp_free(&r);
	return n;
}

static void check_healthy(void)
{
	struct client_resp r;
	client_call(&bk.d, "GET", "/healthz", NULL, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
}

/* A buffer of n copies of c, NUL-terminated (caller frees). */
static char *filled(size_t n, char c)
{
	char *p = malloc(n + 1);
	CHECK(p != NULL);
	memset(p, c, n);
	p[n] = '\0';
	return p;
}

/* ---- write and read ---- */

TEST(files_write_read_utf8)
{
	char *id = new_session();
	struct client_resp r;
	fwrite_call(bk.paid_key, id, "a.txt", "hello\n", NULL, &r);
	CHECK_STATUS(&r, 200);
	char ct[128];
	CHECK(client_resp_header(&r, "Content-Type", ct, sizeof(ct)) != NULL);
	CHECK_MSG(strncmp(ct, "application/json", 16) == 0, "Content-Type '%s'", ct);
	CHECK(path_is(str_of(&r, r.json, "path"), "a.txt"));
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 6);
	client_resp_free(&r);

	fread_call(bk.paid_key, id, "a.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK(path_is(str_of(&r, r.json, "path"), "a.txt"));
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "hello\n");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 6);
	CHECK_STR_EQ(str_of(&r, r.json, "encoding"), "utf8");
	client_resp_free(&r);

	/* The execution sees the same bytes. */
	char *out = client_must_run(bk.paid_key, id, "cat /workspace/a.txt");
	CHECK_STR_EQ(out, "hello\n");
	free(out);

	/* Multi-byte characters: size counts bytes. */
	const char *text = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\n";
	fwrite_call(bk.paid_key, id, "u.txt", text, "utf8", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), strlen(text));
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "u.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), text);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), strlen(text));
	CHECK_STR_EQ(str_of(&r, r.json, "encoding"), "utf8");
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id, "wc -c < u.txt");
	char want[32];
	snprintf(want, sizeof(want), "%zu\n", strlen(text));
	CHECK_STR_EQ(out, want);
	free(out);

	/* An empty file. */
	fwrite_call(bk.paid_key, id, "empty.txt", "", NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 0);
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "empty.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 0);
	client_resp_free(&r);

	/* A file made by an execution reads back too. */
	out = client_must_run(bk.paid_key, id, "printf 'from exec' > e.txt && echo ok");
	free(out);
	fread_call(bk.paid_key, id, "e.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "from exec");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 9);
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

TEST(files_write_paths_and_parents)
{
	char *id = new_session();
	struct client_resp r;
	fwrite_ok(bk.paid_key, id, "d1/d2/d3/f.txt", "deep", NULL);
	fwrite_ok(bk.paid_key, id, "/workspace/abs/x.txt", "abs", NULL);
	fwrite_ok(bk.paid_key, id, "./dot/./y.txt", "dot", NULL);
	fwrite_ok(bk.paid_key, id, "/workspace/top.txt", "top", NULL);
	char *out = client_must_run(bk.paid_key, id,
				    "cat d1/d2/d3/f.txt abs/x.txt dot/y.txt top.txt; echo; "
				    "test -d d1/d2/d3 && test -d abs && echo dirs");
	CHECK_STR_EQ(out, "deepabsdottop\ndirs\n");
	free(out);

	/* Relative and absolute name the same file. */
	fread_call(bk.paid_key, id, "/workspace/d1/d2/d3/f.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "deep");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "abs/x.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "abs");
	client_resp_free(&r);

	/* Overwriting replaces the whole content (no tail of the old one). */
	fwrite_ok(bk.paid_key, id, "top.txt", "a much longer first version\n", NULL);
	fwrite_ok(bk.paid_key, id, "top.txt", "v2", NULL);
	fread_call(bk.paid_key, id, "top.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "v2");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 2);
	client_resp_free(&r);

	/* A directory cannot be overwritten by a file. */
	fwrite_call(bk.paid_key, id, "d1", "x", NULL, &r);
	CHECK_MSG(r.status == 400 || r.status == 409, "writing over a directory: HTTP %ld %s",
		  r.status, r.body);
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id, "test -d d1/d2 && echo still");
	CHECK_STR_EQ(out, "still\n");
	free(out);
	/* Nor can a file be a parent. */
	fwrite_call(bk.paid_key, id, "top.txt/under.txt", "x", NULL, &r);
	CHECK_MSG(r.status == 400 || r.status == 409, "a file as a parent: HTTP %ld %s", r.status,
		  r.body);
	client_resp_free(&r);

	/* No temporary file is left behind by any of it. */
	out = client_must_run(bk.paid_key, id, "find /workspace -mindepth 1 -name '.*'");
	CHECK_STR_EQ(out, "");
	free(out);
	end_session(bk.paid_key, id);
}

TEST(files_owned_by_session_user)
{
	char *id = new_session();
	fwrite_ok(bk.paid_key, id, "own.txt", "mine", NULL);
	fwrite_ok(bk.paid_key, id, "newdir/sub/own2.txt", "mine", NULL);
	char *out = client_must_run(bk.paid_key, id,
				    "stat -c %u own.txt newdir newdir/sub newdir/sub/own2.txt");
	CHECK_MSG(strcmp(out, "1000\n1000\n1000\n1000\n") == 0,
		  "owners of own.txt, newdir, newdir/sub, newdir/sub/own2.txt:\n%s", out);
	free(out);
	/* The user can change and remove what the API wrote. */
	out = client_must_run(bk.paid_key, id,
			      "echo more >> own.txt && cat own.txt && rm -r newdir && echo gone");
	CHECK_STR_EQ(out, "mine"
			  "more\ngone\n");
	free(out);
	end_session(bk.paid_key, id);
}

TEST(files_base64_round_trip)
{
	char *id = new_session();
	unsigned char bytes[256];
	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	char b64[512];
	sodium_bin2base64(b64, sizeof(b64), bytes, sizeof(bytes), sodium_base64_VARIANT_ORIGINAL);

	struct client_resp r;
	fwrite_call(bk.paid_key, id, "bin/all.bin", b64, "base64", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 256);
	client_resp_free(&r);

	/* Inside, exactly the 256 bytes. */
	char *out = client_must_run(
	    bk.paid_key, id,
	    "python3 -c \"print(open('bin/all.bin','rb').read() == bytes(range(256)))\"");
	CHECK_STR_EQ(out, "True\n");
	free(out);

	fread_call(bk.paid_key, id, "bin/all.bin", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "encoding"), "base64");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 256);
	const char *got = str_of(&r, r.json, "content");
	unsigned char dec[512];
	size_t dlen = 0;
	CHECK_MSG(sodium_base642bin(dec, sizeof(dec), got, strlen(got), NULL, &dlen, NULL,
				    sodium_base64_VARIANT_ORIGINAL) == 0,
		  "content is not base64: %s", got);
	CHECK_INT_EQ(dlen, 256);
	CHECK(memcmp(dec, bytes, 256) == 0);
	client_resp_free(&r);

	/* A file made by an execution with a stray byte: base64 too. */
	out = client_must_run(bk.paid_key, id, "printf 'ab\\377cd' > stray.bin && echo ok");
	free(out);
	fread_call(bk.paid_key, id, "stray.bin", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "encoding"), "base64");
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "YWL/Y2Q=");
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 5);
	client_resp_free(&r);

	/* Base64 of UTF-8 text reads back as text. */
	fwrite_call(bk.paid_key, id, "t.txt", "aMOpbGxvCg==", "base64", &r); /* "héllo\n" */
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 7);
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "t.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "encoding"), "utf8");
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "h\xc3\xa9llo\n");
	client_resp_free(&r);

	/* Bad base64, an unknown encoding: 400 naming the field, nothing written. */
	fwrite_call(bk.paid_key, id, "bad.bin", "not*base64!", "base64", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "content");
	client_resp_free(&r);
	fwrite_call(bk.paid_key, id, "bad.bin", "abc", "hex", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "encoding");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "bad.bin", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

TEST(files_read_errors)
{
	char *id = new_session();
	struct client_resp r;
	fread_call(bk.paid_key, id, "missing.txt", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "no/such/dir/f.txt", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);

	/* A directory is not a file. */
	char *out = client_must_run(bk.paid_key, id, "mkdir -p adir && echo ok");
	free(out);
	fread_call(bk.paid_key, id, "adir", &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	/* No path at all, or an empty one. */
	fread_call(bk.paid_key, id, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "/workspace", &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

/* ---- paths leaving the workspace ---- */

static const char *const escaping[] = {
    "..",
    "../x.txt",
    "a/../../x.txt",
    "/etc/passwd",
    "/etc/bk-escape.txt",
    "/workspace/../etc/passwd",
    "/workspacex/a.txt",
    "/tmp/x.txt",
    "/",
    "a/b/../../../x.txt",
};

TEST(files_escape_lexical)
{
	char *id = new_session();
	struct client_resp r;
	for (size_t i = 0; i < sizeof(escaping) / sizeof(escaping[0]); i++) {
		const char *p = escaping[i];
		fwrite_call(bk.paid_key, id, p, "x", NULL, &r);
		if (r.status != 400)
			fprintf(stderr, "    write '%s'\n", p);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
		fread_call(bk.paid_key, id, p, &r);
		if (r.status != 400)
			fprintf(stderr, "    read '%s'\n", p);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
		fdelete_call(bk.paid_key, id, p, 1, &r);
		if (r.status != 400)
			fprintf(stderr, "    delete '%s'\n", p);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
		char q[256];
		char *ep = client_urlencode(p);
		snprintf(q, sizeof(q), "path=%s", ep);
		free(ep);
		flist_call(bk.paid_key, id, q, &r);
		if (r.status != 400)
			fprintf(stderr, "    list '%s'\n", p);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
	}
	/* The workspace is untouched and nothing landed outside it. */
	char *out =
	    client_must_run(bk.paid_key, id,
			    "find /workspace -mindepth 1; test -e /etc/bk-escape.txt && "
			    "echo escaped; test -e /tmp/x.txt && echo tmp; test -e /x.txt && "
			    "echo root; true");
	CHECK_STR_EQ(out, "");
	free(out);
	end_session(bk.paid_key, id);
}

TEST(files_escape_symlink)
{
	char *id = new_session();
	char *out = client_must_run(bk.paid_key, id,
				    "ln -s /etc e && ln -s /tmp t && ln -s /etc/passwd pw && "
				    "ln -s /tmp/target-bk lf && ln -s ../.. up && echo ok");
	free(out);
	struct client_resp r;
	/* Writes through a symlink that leaves: 400, nothing written. */
	static const char *const wpaths[] = {"e/bk-escape.txt",	 "t/bk-escape.txt", "lf", "pw",
					     "up/bk-escape.txt", "t/sub/deeper.txt"};
	for (size_t i = 0; i < sizeof(wpaths) / sizeof(wpaths[0]); i++) {
		fwrite_call(bk.paid_key, id, wpaths[i], "escaped", NULL, &r);
		if (r.status != 400)
			fprintf(stderr, "    write '%s'\n", wpaths[i]);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
	}
	out = client_must_run(bk.paid_key, id,
			      "test -e /tmp/bk-escape.txt && echo tmp; test -e /tmp/target-bk && "
			      "echo target; test -e /tmp/sub && echo sub; "
			      "test -e /etc/bk-escape.txt && echo etc; "
			      "test -e /bk-escape.txt && echo root; grep -c escaped /etc/passwd; "
			      "test -L pw && test -L lf && echo links");
	CHECK_MSG(strcmp(out, "0\nlinks\n") == 0,
		  "a write went through a symlink (or replaced it):\n%s", out);
	free(out);

	/* Reads through one: 400, not the file outside. */
	static const char *const rpaths[] = {"e/passwd", "pw", "e/hostname", "up/etc/passwd"};
	for (size_t i = 0; i < sizeof(rpaths) / sizeof(rpaths[0]); i++) {
		fread_call(bk.paid_key, id, rpaths[i], &r);
		if (r.status != 400)
			fprintf(stderr, "    read '%s'\n", rpaths[i]);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
		client_resp_free(&r);
	}
	/* The link itself, to a directory outside: 400 too. */
	fread_call(bk.paid_key, id, "e", &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	/* Deleting through one: 400, the target stays. */
	fdelete_call(bk.paid_key, id, "e/passwd", -1, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id, "test -f /etc/passwd && echo there");
	CHECK_STR_EQ(out, "there\n");
	free(out);

	/* A relative symlink that stays inside is followed. */
	out = client_must_run(bk.paid_key, id, "mkdir real && ln -s real rel && echo ok");
	free(out);
	fwrite_ok(bk.paid_key, id, "rel/in.txt", "inside", NULL);
	out = client_must_run(bk.paid_key, id, "cat real/in.txt");
	CHECK_STR_EQ(out, "inside");
	free(out);
	fread_call(bk.paid_key, id, "rel/in.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "inside");
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

/* API.md: a path is 400 when it *leaves* the workspace through a symlink;
 * an absolute symlink that points inside it does not leave. */
TEST(files_symlink_absolute_inside)
{
	char *id = new_session();
	char *out = client_must_run(bk.paid_key, id,
				    "mkdir real && echo hi > real/f.txt && "
				    "ln -s /workspace/real abslink && echo ok");
	free(out);
	struct client_resp r;
	fread_call(bk.paid_key, id, "abslink/f.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "hi\n");
	client_resp_free(&r);
	fwrite_ok(bk.paid_key, id, "abslink/g.txt", "through", NULL);
	out = client_must_run(bk.paid_key, id, "cat real/g.txt");
	CHECK_STR_EQ(out, "through");
	free(out);
	end_session(bk.paid_key, id);
}

/* ---- limits ---- */

TEST_TIMEOUT(files_size_limit_free, 90)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	struct client_resp r;

	/* Exactly 10 MiB: fine. */
	char *big = filled(10 * MIB, 'a');
	fwrite_call(key, id, "ten.txt", big, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 10 * MIB);
	client_resp_free(&r);
	free(big);
	fread_call(key, id, "ten.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 10 * MIB);
	CHECK_INT_EQ(strlen(str_of(&r, r.json, "content")), 10 * MIB);
	client_resp_free(&r);

	/* One byte more: 413, and the old file is untouched. */
	big = filled(10 * MIB + 1, 'b');
	fwrite_call(key, id, "ten.txt", big, NULL, &r);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	free(big);
	char *out = client_must_run(key, id, "wc -c < ten.txt; head -c 1 ten.txt; echo");
	CHECK_STR_EQ(out, "10485760\na\n");
	free(out);

	/* The same in base64 (the decoded size counts). */
	size_t n = 10 * MIB + 1;
	unsigned char *bin = calloc(1, n);
	size_t blen = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = malloc(blen);
	sodium_bin2base64(b64, blen, bin, n, sodium_base64_VARIANT_ORIGINAL);
	fwrite_call(key, id, "b.bin", b64, "base64", &r);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	free(b64);
	free(bin);

	/* Reading a file over the limit (made by an execution): 413. */
	out = client_must_run(key, id,
			      "head -c 10485761 /dev/zero | tr '\\0' c > over.txt && echo ok");
	free(out);
	fread_call(key, id, "over.txt", &r);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	fread_call(key, id, "missing-b.bin", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	out = client_must_run(key, id, "ls");
	CHECK_STR_EQ(out, "over.txt\nten.txt\n");
	free(out);
	end_session(key, id);
}

TEST_TIMEOUT(files_size_limit_paid, 120)
{
	char *id = new_session();
	struct client_resp r;
	char *big = filled(50 * MIB + 1, 'p');
	fwrite_call(bk.paid_key, id, "fifty.txt", big, NULL, &r);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	/* Exactly 50 MiB: fine (a free key's 10 MiB is not the paid limit). */
	big[50 * MIB] = '\0';
	fwrite_call(bk.paid_key, id, "fifty.txt", big, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 50 * MIB);
	client_resp_free(&r);
	free(big);
	fread_call(bk.paid_key, id, "fifty.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 50 * MIB);
	client_resp_free(&r);

	char *out =
	    client_must_run(bk.paid_key, id, "head -c 52428801 /dev/zero > over.bin && echo ok");
	free(out);
	fread_call(bk.paid_key, id, "over.bin", &r);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	check_healthy();
	end_session(bk.paid_key, id);
}

TEST_TIMEOUT(files_disk_full, 90)
{
	char *id = client_must_create(bk.paid_key, "{\"resourceLimits\":{\"disk\":16}}");
	struct client_resp r;
	fwrite_ok(bk.paid_key, id, "v.txt", "version one\n", NULL);

	/* Fill the disk from inside. */
	client_must_exec(bk.paid_key, id, "head -c 40000000 /dev/zero > fill", NULL, &r);
	CHECK_MSG(int_of(&r, r.json, "exitCode") != 0, "40 MB fit on a 16 MB disk: %s", r.body);
	client_resp_free(&r);

	/* Overwriting with more than is left: 507, the old content stays. */
	char *big = filled(2 * MIB, 'z');
	fwrite_call(bk.paid_key, id, "v.txt", big, NULL, &r);
	CHECK_ERROR(&r, 507, "disk_full");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "v.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "version one\n");
	client_resp_free(&r);

	/* A new file: 507, and it does not exist afterwards. */
	fwrite_call(bk.paid_key, id, "new/n.txt", big, NULL, &r);
	CHECK_ERROR(&r, 507, "disk_full");
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "new/n.txt", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	char *out = client_must_run(bk.paid_key, id,
				    "find /workspace -mindepth 1 -name '.*'; ls -A /workspace | "
				    "grep -v '^new$'");
	CHECK_STR_EQ(out, "fill\nv.txt\n");
	free(out);

	/* With room again, the write goes through. */
	out = client_must_run(bk.paid_key, id, "rm fill && echo ok");
	free(out);
	fwrite_call(bk.paid_key, id, "v.txt", big, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "size"), 2 * MIB);
	client_resp_free(&r);
	free(big);
	out = client_must_run(bk.paid_key, id, "wc -c < v.txt");
	CHECK_STR_EQ(out, "2097152\n");
	free(out);
	end_session(bk.paid_key, id);
}

/* ---- list ---- */

TEST(files_list_basic)
{
	char *id = new_session();
	struct client_resp r;
	flist_call(bk.paid_key, id, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(json_is_array(json_object_get(r.json, "files")) &&
		      json_array_size(json_object_get(r.json, "files")) == 0,
		  "a new workspace lists %s", r.body);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 0);
	client_resp_free(&r);

	fwrite_ok(bk.paid_key, id, "z.txt", "zz", NULL);
	fwrite_ok(bk.paid_key, id, "a.txt", "abc", NULL);
	fwrite_ok(bk.paid_key, id, "b/c.txt", "12345", NULL);
	fwrite_ok(bk.paid_key, id, "b/d/e.txt", "", NULL);
	char *out = client_must_run(bk.paid_key, id, "mkdir emptydir && echo ok");
	free(out);
	time_t now = time(NULL);

	flist_call(bk.paid_key, id, NULL, &r);
	CHECK_STATUS(&r, 200);
	char *paths = list_paths(&r);
	CHECK_STR_EQ(paths, "a.txt\nb\nemptydir\nz.txt\n");
	free(paths);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 4);
	json_t *e = list_entry(&r, "a.txt");
	CHECK_STR_EQ(str_of(&r, e, "type"), "file");
	CHECK_INT_EQ(int_of(&r, e, "size"), 3);
	double t;
	CHECK(client_parse_time(str_of(&r, e, "modified"), &t));
	CHECK_MSG(t > (double)now - 60 && t < (double)now + 60, "modified %s, now %lld",
		  str_of(&r, e, "modified"), (long long)now);
	CHECK_STR_EQ(str_of(&r, list_entry(&r, "b"), "type"), "directory");
	CHECK_STR_EQ(str_of(&r, list_entry(&r, "emptydir"), "type"), "directory");
	CHECK_INT_EQ(int_of(&r, list_entry(&r, "z.txt"), "size"), 2);
	client_resp_free(&r);

	/* recursive=true goes down; recursive=false does not. */
	flist_call(bk.paid_key, id, "recursive=true", &r);
	CHECK_STATUS(&r, 200);
	paths = list_paths(&r);
	CHECK_STR_EQ(paths, "a.txt\nb\nb/c.txt\nb/d\nb/d/e.txt\nemptydir\nz.txt\n");
	free(paths);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 7);
	CHECK_INT_EQ(int_of(&r, list_entry(&r, "b/c.txt"), "size"), 5);
	CHECK_STR_EQ(str_of(&r, list_entry(&r, "b/d"), "type"), "directory");
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "recursive=false", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 4);
	client_resp_free(&r);

	/* A subdirectory, by relative and by absolute path. */
	flist_call(bk.paid_key, id, "path=b", &r);
	CHECK_STATUS(&r, 200);
	paths = list_paths(&r);
	CHECK_STR_EQ(paths, "b/c.txt\nb/d\n");
	free(paths);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 2);
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "path=%2Fworkspace%2Fb&recursive=true", &r);
	CHECK_STATUS(&r, 200);
	paths = list_paths(&r);
	CHECK_STR_EQ(paths, "b/c.txt\nb/d\nb/d/e.txt\n");
	free(paths);
	client_resp_free(&r);
	/* The workspace itself, by name. */
	flist_call(bk.paid_key, id, "path=%2Fworkspace", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 4);
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "path=emptydir", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 0);
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

TEST(files_list_paging)
{
	char *id = new_session();
	/* f000 .. f149 */
	char *out = client_must_run(bk.paid_key, id,
				    "i=0; while [ $i -lt 150 ]; do printf x > $(printf f%03d $i); "
				    "i=$((i+1)); done; ls | wc -l");
	CHECK_STR_EQ(out, "150\n");
	free(out);
	struct client_resp r;

	/* Default limit 100. */
	flist_call(bk.paid_key, id, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 100);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 150);
	CHECK(path_is(str_of(&r, json_array_get(json_object_get(r.json, "files"), 0), "path"),
		      "f000"));
	CHECK(path_is(str_of(&r, json_array_get(json_object_get(r.json, "files"), 99), "path"),
		      "f099"));
	client_resp_free(&r);

	/* Pages walk the sorted list without gaps or repeats. */
	int seen = 0;
	for (int off = 0; off < 150; off += 40) {
		char q[64];
		snprintf(q, sizeof(q), "limit=40&offset=%d", off);
		flist_call(bk.paid_key, id, q, &r);
		CHECK_STATUS(&r, 200);
		CHECK_INT_EQ(int_of(&r, r.json, "total"), 150);
		json_t *files = json_object_get(r.json, "files");
		CHECK_INT_EQ(json_array_size(files), off + 40 <= 150 ? 40 : 150 - off);
		size_t i;
		json_t *e;
		json_array_foreach (files, i, e) {
			char want[16];
			snprintf(want, sizeof(want), "f%03d", seen);
			CHECK_MSG(path_is(str_of(&r, e, "path"), want),
				  "offset %d [%zu]: %s, want %s", off, i, str_of(&r, e, "path"),
				  want);
			seen++;
		}
		client_resp_free(&r);
	}
	CHECK_INT_EQ(seen, 150);

	/* Past the end: nothing, total still right. */
	flist_call(bk.paid_key, id, "offset=150", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 0);
	CHECK_INT_EQ(int_of(&r, r.json, "total"), 150);
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "offset=1000000", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 0);
	client_resp_free(&r);

	/* Limits: 1 and 1000 are fine. */
	flist_call(bk.paid_key, id, "limit=1&offset=149", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 1);
	CHECK(path_is(str_of(&r, json_array_get(json_object_get(r.json, "files"), 0), "path"),
		      "f149"));
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "limit=1000", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "files")), 150);
	client_resp_free(&r);

	/* Out of range or not numbers: 400 naming the parameter. */
	static const char *const bad_limit[] = {
	    "limit=1001", "limit=0", "limit=abc", "limit=-1",
	    "limit=1.5",  "limit=",  "limit=10x", "limit=99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad_limit) / sizeof(bad_limit[0]); i++) {
		flist_call(bk.paid_key, id, bad_limit[i], &r);
		if (r.status != 400)
			fprintf(stderr, "    %s\n", bad_limit[i]);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "limit");
		client_resp_free(&r);
	}
	static const char *const bad_offset[] = {"offset=-1", "offset=abc", "offset=1.5"};
	for (size_t i = 0; i < sizeof(bad_offset) / sizeof(bad_offset[0]); i++) {
		flist_call(bk.paid_key, id, bad_offset[i], &r);
		if (r.status != 400)
			fprintf(stderr, "    %s\n", bad_offset[i]);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "offset");
		client_resp_free(&r);
	}
	flist_call(bk.paid_key, id, "recursive=yes", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "recursive");
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

TEST(files_list_errors_and_symlinks)
{
	char *id = new_session();
	struct client_resp r;
	flist_call(bk.paid_key, id, "path=nope", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "path=nope%2Fdeeper", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);

	char *out = client_must_run(bk.paid_key, id,
				    "ln -s /etc e && mkdir d && echo x > d/f && echo x > plain && "
				    "ln -s d dl && echo ok");
	free(out);
	/* A symlink is listed as an entry of its own, not entered. */
	flist_call(bk.paid_key, id, "recursive=true", &r);
	CHECK_STATUS(&r, 200);
	char *paths = list_paths(&r);
	CHECK_STR_EQ(paths, "d\nd/f\ndl\ne\nplain\n");
	free(paths);
	client_resp_free(&r);
	/* Listing through one that leaves: 400 naming path. */
	flist_call(bk.paid_key, id, "path=e", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	flist_call(bk.paid_key, id, "path=e%2Fssl", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	/* A file is not a directory: a clean client error. */
	flist_call(bk.paid_key, id, "path=plain", &r);
	CHECK_MSG(r.status == 400 || r.status == 404, "listing a file: HTTP %ld %s", r.status,
		  r.body);
	client_resp_free(&r);
	end_session(bk.paid_key, id);
}

/* ---- delete ---- */

TEST(files_delete_basic)
{
	char *id = new_session();
	struct client_resp r;
	fwrite_ok(bk.paid_key, id, "a.txt", "a", NULL);
	fwrite_ok(bk.paid_key, id, "dir/sub/b.txt", "b", NULL);
	fwrite_ok(bk.paid_key, id, "dir/c.txt", "c", NULL);
	char *out = client_must_run(bk.paid_key, id, "mkdir empty && echo ok");
	free(out);

	fdelete_call(bk.paid_key, id, "a.txt", -1, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(json_is_true(json_object_get(r.json, "deleted")), "deleted: %s", r.body);
	CHECK(path_is(str_of(&r, r.json, "path"), "a.txt"));
	client_resp_free(&r);
	fread_call(bk.paid_key, id, "a.txt", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "a.txt", -1, &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "no/such/thing", 1, &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);

	/* A non-empty directory: 409 without recursive (false or absent). */
	fdelete_call(bk.paid_key, id, "dir", -1, &r);
	CHECK_ERROR(&r, 409, "conflict");
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "dir", 0, &r);
	CHECK_ERROR(&r, 409, "conflict");
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id, "cat dir/sub/b.txt dir/c.txt");
	CHECK_STR_EQ(out, "bc");
	free(out);
	/* An empty one goes without. */
	fdelete_call(bk.paid_key, id, "empty", -1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	/* With recursive the tree goes, by absolute path too. */
	fdelete_call(bk.paid_key, id, "/workspace/dir", 1, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(json_is_true(json_object_get(r.json, "deleted")), "deleted: %s", r.body);
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id, "find /workspace -mindepth 1");
	CHECK_STR_EQ(out, "");
	free(out);

	/* The workspace itself: 400, and it stays with its content. */
	fwrite_ok(bk.paid_key, id, "keep.txt", "k", NULL);
	static const char *const roots[] = {"",	 "/workspace", "/workspace/",
					    ".", "./",	       "/workspace/."};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		fdelete_call(bk.paid_key, id, roots[i], 1, &r);
		if (r.status != 400)
			fprintf(stderr, "    delete '%s'\n", roots[i]);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	out = client_must_run(bk.paid_key, id, "cat /workspace/keep.txt");
	CHECK_STR_EQ(out, "k");
	free(out);
	end_session(bk.paid_key, id);
}

TEST(files_delete_symlinks)
{
	char *id = new_session();
	char *out =
	    client_must_run(bk.paid_key, id,
			    "mkdir keep && echo k > keep/f && ln -s /workspace/keep link && "
			    "ln -s keep rlink && ln -s /etc e && ln -s /etc/passwd pw && "
			    "ln -s /nowhere dangling && echo ok");
	free(out);
	struct client_resp r;
	/* The link goes, its target stays (with or without recursive). */
	fdelete_call(bk.paid_key, id, "link", -1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "rlink", 1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	out = client_must_run(
	    bk.paid_key, id,
	    "cat keep/f; test -L link || echo nolink; test -L rlink || echo norlink");
	CHECK_STR_EQ(out, "k\nnolink\nnorlink\n");
	free(out);

	/* Links that point out: only the link goes. */
	fdelete_call(bk.paid_key, id, "e", 1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "pw", -1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	fdelete_call(bk.paid_key, id, "dangling", -1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	out = client_must_run(bk.paid_key, id,
			      "test -f /etc/passwd && test -d /etc/ssl -o -f /etc/hostname && "
			      "echo etc; ls -A /workspace");
	CHECK_STR_EQ(out, "etc\nkeep\n");
	free(out);
	end_session(bk.paid_key, id);
}

/* ---- sessions, keys and bad input ---- */

TEST(files_session_checks)
{
	char *id = new_session();
	char other_key[CLIENT_KEY_MAX];
	client_must_key("paid", other_key, sizeof(other_key));
	fwrite_ok(bk.paid_key, id, "s.txt", "secret", NULL);
	struct client_resp r;
	/* An unknown session, another key's session: 404 session_not_found. */
	const char *ids[] = {NO_SESSION, id, "../../etc", "ses_"};
	const char *keys[] = {bk.paid_key, other_key, bk.paid_key, bk.paid_key};
	for (size_t i = 0; i < 4; i++) {
		fwrite_call(keys[i], ids[i], "x.txt", "x", NULL, &r);
		CHECK_ERROR(&r, 404, "session_not_found");
		client_resp_free(&r);
		fread_call(keys[i], ids[i], "s.txt", &r);
		CHECK_ERROR(&r, 404, "session_not_found");
		client_resp_free(&r);
		flist_call(keys[i], ids[i], NULL, &r);
		CHECK_ERROR(&r, 404, "session_not_found");
		client_resp_free(&r);
		fdelete_call(keys[i], ids[i], "s.txt", -1, &r);
		CHECK_ERROR(&r, 404, "session_not_found");
		client_resp_free(&r);
	}
	/* No key: 401. */
	fread_call(NULL, id, "s.txt", &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	fwrite_call(NULL, id, "x.txt", "x", NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	/* The owner's file is untouched. */
	fread_call(bk.paid_key, id, "s.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(str_of(&r, r.json, "content"), "secret");
	client_resp_free(&r);
	char *out = client_must_run(bk.paid_key, id, "ls");
	CHECK_STR_EQ(out, "s.txt\n");
	free(out);

	/* A deleted session answers 404. */
	char *gone = new_session();
	client_must_delete(bk.paid_key, gone);
	fread_call(bk.paid_key, gone, "s.txt", &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	free(gone);
	end_session(bk.paid_key, id);
}

TEST(files_bad_input)
{
	char *id = new_session();
	struct client_resp r;
	char body[1024];

	/* Missing sessionId: 400 naming it, on every endpoint. */
	post_take(bk.paid_key, "/files/write", json_pack("{s:s,s:s}", "path", "a", "content", "x"),
		  &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "sessionId");
	client_resp_free(&r);
	post_take(bk.paid_key, "/files/delete", json_pack("{s:s}", "path", "a"), &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "sessionId");
	client_resp_free(&r);
	client_call(&bk.d, "GET", "/files/read?path=a", bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "sessionId");
	client_resp_free(&r);
	client_call(&bk.d, "GET", "/files/list", bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "sessionId");
	client_resp_free(&r);

	/* Malformed JSON, not an object, no body. */
	static const char *const junk[] = {"{", "[]", "\"x\"", "{\"sessionId\":", "null"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		post_raw(bk.paid_key, "/files/write", junk[i], 0, &r);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
		post_raw(bk.paid_key, "/files/delete", junk[i], 0, &r);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	struct client_req req = {.method = "POST", .path = "/files/write", .key = bk.paid_key};
	client_request(&bk.d, &req, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	/* Wrong types: 400 naming the field. */
	struct {
		const char *endpoint, *field;
		json_t *body;
	} cases[] = {
	    {"/files/write", "sessionId",
	     json_pack("{s:i,s:s,s:s}", "sessionId", 5, "path", "a", "content", "x")},
	    {"/files/write", "path",
	     json_pack("{s:s,s:i,s:s}", "sessionId", id, "path", 5, "content", "x")},
	    {"/files/write", "path",
	     json_pack("{s:s,s:n,s:s}", "sessionId", id, "path", "content", "x")},
	    {"/files/write", "content",
	     json_pack("{s:s,s:s,s:i}", "sessionId", id, "path", "a", "content", 5)},
	    {"/files/write", "content",
	     json_pack("{s:s,s:s,s:[s]}", "sessionId", id, "path", "a", "content", "x")},
	    {"/files/write", "encoding",
	     json_pack("{s:s,s:s,s:s,s:i}", "sessionId", id, "path", "a", "content", "x",
		       "encoding", 1)},
	    {"/files/write", "path", json_pack("{s:s,s:s}", "sessionId", id, "content", "x")},
	    {"/files/write", "content", json_pack("{s:s,s:s}", "sessionId", id, "path", "a")},
	    {"/files/write", "path",
	     json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", "", "content", "x")},
	    {"/files/delete", "sessionId", json_pack("{s:b,s:s}", "sessionId", 1, "path", "a")},
	    {"/files/delete", "path", json_pack("{s:s,s:i}", "sessionId", id, "path", 5)},
	    {"/files/delete", "path", json_pack("{s:s}", "sessionId", id)},
	    {"/files/delete", "recursive",
	     json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", "a", "recursive", "yes")},
	    {"/files/delete", "recursive",
	     json_pack("{s:s,s:s,s:i}", "sessionId", id, "path", "a", "recursive", 1)},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = json_dumps(cases[i].body, JSON_COMPACT);
		post_take(bk.paid_key, cases[i].endpoint, cases[i].body, &r);
		if (r.status != 400)
			fprintf(stderr, "    %s %s\n", cases[i].endpoint, text);
		free(text);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", cases[i].field);
		client_resp_free(&r);
	}

	/* NUL bytes in the path (escaped), invalid UTF-8 in the content. */
	int n = snprintf(body, sizeof(body),
			 "{\"sessionId\":\"%s\",\"path\":\"a\\u0000b\",\"content\":\"x\"}", id);
	post_raw(bk.paid_key, "/files/write", body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	n = snprintf(body, sizeof(body),
		     "{\"sessionId\":\"%s\",\"path\":\"a.txt\",\"content\":\"x\xff\"}", id);
	post_raw(bk.paid_key, "/files/write", body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	n = snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"path\":\"a\\u0000b\"}", id);
	post_raw(bk.paid_key, "/files/delete", body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	/* Nothing of it was written, and the daemon is fine. */
	char *out = client_must_run(bk.paid_key, id, "find /workspace -mindepth 1");
	CHECK_STR_EQ(out, "");
	free(out);

	/* A NUL in a query's path is refused, not cut short to another name. */
	fwrite_ok(bk.paid_key, id, "a", "short name", NULL);
	char url[256];
	snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=a%%00b", id);
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	snprintf(url, sizeof(url), "/files/list?sessionId=%s&path=a%%00b", id);
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "path");
	client_resp_free(&r);
	check_healthy();
	end_session(bk.paid_key, id);
}

/* ---- filesCount ---- */

TEST(files_count_in_session_info)
{
	char *id = new_session();
	CHECK_INT_EQ(session_files_count(bk.paid_key, id), 0);
	fwrite_ok(bk.paid_key, id, "one.txt", "1", NULL);
	fwrite_ok(bk.paid_key, id, "d/two.txt", "2", NULL);
	fwrite_ok(bk.paid_key, id, "d/e/three.txt", "3", NULL);
	char *out = client_must_run(bk.paid_key, id,
				    "mkdir -p only/dirs/here && ln -s one.txt lnk && echo ok");
	free(out);
	/* Regular files, recursively: directories and links do not count. */
	CHECK_INT_EQ(session_files_count(bk.paid_key, id), 3);
	struct client_resp r;
	fdelete_call(bk.paid_key, id, "d", 1, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	CHECK_INT_EQ(session_files_count(bk.paid_key, id), 1);
	out = client_must_run(bk.paid_key, id, "touch a b c && echo ok");
	free(out);
	CHECK_INT_EQ(session_files_count(bk.paid_key, id), 4);
	end_session(bk.paid_key, id);
}
