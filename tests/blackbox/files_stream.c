/* Black-box tests of what large files and large trees cost the daemon:
 * GET /files/read and InstaVM's POST /download stream a file piece by piece
 * (byte-exact in text and in base64, the daemon's peak memory bounded with
 * many readers at once, and with readers that never read), GET /files/list
 * pages through a tree with a cursor (each entry once, in order), and names
 * that are not UTF-8 or hold control characters list with their bytes in
 * pathBase64. One real bunkerd for every test.
 */
#include "../client.h"
#include "../iv_client.h"
#include "../raw.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* CLIENT_FIXTURE(NULL), with one change to the daemon's environment: in
 * the sanitizer build, AddressSanitizer keeps what is freed in a
 * quarantine of 256 MB by default before it reuses it, and a read frees a
 * piece per message: that quarantine, not the daemon, would fill the
 * peak that files_read_concurrent_peak_rss measures. A smaller one keeps
 * the figure the daemon's own. */
int harness_setup(void)
{
	return client_fixture_start_measured();
}

void harness_teardown(void)
{
	client_fixture_stop();
}

int harness_final_check(void)
{
	return client_fixture_check();
}

#define MIB ((size_t)1 << 20)

/* The text file's bytes: ASCII, what JSON escapes, and multi-byte UTF-8
 * (whose sequences straddle every piece boundary sooner or later). */
static const char text_unit[] = "line \"quoted\" back\\slash\ttab\x01\x1f caf\xc3\xa9 "
				"\xe2\x82\xac \xf0\x9f\x98\x80 end\n";

static char *text_bytes(size_t len)
{
	char *b = malloc(len);
	CHECK(b != NULL);
	size_t u = sizeof(text_unit) - 1;
	for (size_t i = 0; i < len; i++)
		b[i] = text_unit[i % u];
	return b;
}

/* The binary file's bytes: every byte value, never valid UTF-8 for long. */
static unsigned char bin_byte(size_t i)
{
	return (unsigned char)((i * 131u + (i >> 9)) & 0xff);
}

/* The shell command that writes size bytes of text_unit over and over at path. */
static void text_command(char *out, size_t len, const char *path, size_t size)
{
	/* The unit as octal escapes of a Python bytes literal: no quote or
	 * backslash of its own reaches the shell. */
	char esc[512];
	size_t k = 0;
	for (size_t i = 0; i < sizeof(text_unit) - 1; i++)
		k += (size_t)snprintf(esc + k, sizeof(esc) - k, "\\%03o",
				      (unsigned char)text_unit[i]);
	snprintf(out, len,
		 "python3 -c 'import sys; u=b\"%s\"; n=%zu; "
		 "open(\"%s\",\"wb\").write((u*(n//len(u)+1))[:n])'",
		 esc, size, path);
}

static void bin_command(char *out, size_t len, const char *path, size_t size)
{
	snprintf(out, len,
		 "python3 -c 'n=%zu; open(\"%s\",\"wb\").write(bytes(((i*131+(i>>9))&255) "
		 "for i in range(n)))'",
		 size, path);
}

static void read_call(const char *id, const char *path, struct client_resp *r)
{
	char url[512];
	snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=%s", id, path);
	struct client_req req = {
	    .method = "GET", .path = url, .key = bk.paid_key, .timeout_s = 300};
	client_request(&bk.d, &req, r);
}

/* ---- reads ---- */

TEST_TIMEOUT(files_read_20mb_text_exact, 300)
{
	size_t size = 20 * MIB + 7;
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[2048];
	text_command(cmd, sizeof(cmd), "big.txt", size);
	free(client_must_run(bk.paid_key, id, cmd));
	struct client_resp r;
	read_call(id, "big.txt", &r);
	CHECK_STATUS(&r, 200);
	CHECK(r.json != NULL);
	CHECK_MSG(strcmp(client_must_str(r.json, "encoding", "read"), "utf8") == 0, "encoding %s",
		  client_json_str(r.json, "encoding"));
	CHECK(client_must_int(r.json, "size", "read") == (long long)size);
	CHECK(strcmp(client_must_str(r.json, "path", "read"), "big.txt") == 0);
	json_t *content = json_object_get(r.json, "content");
	CHECK(json_is_string(content));
	char *want = text_bytes(size);
	CHECK_MSG(json_string_length(content) == size, "content of %zu bytes, not %zu",
		  json_string_length(content), size);
	CHECK(memcmp(json_string_value(content), want, size) == 0);
	free(want);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(files_read_20mb_binary_exact, 300)
{
	size_t size = 20 * MIB + 1; /* not a multiple of 3: padding at the end */
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[1024];
	bin_command(cmd, sizeof(cmd), "big.bin", size);
	free(client_must_run(bk.paid_key, id, cmd));
	struct client_resp r;
	read_call(id, "big.bin", &r);
	CHECK_STATUS(&r, 200);
	CHECK(r.json != NULL);
	CHECK(strcmp(client_must_str(r.json, "encoding", "read"), "base64") == 0);
	CHECK(client_must_int(r.json, "size", "read") == (long long)size);
	const char *b64 = client_must_str(r.json, "content", "read");
	size_t blen = strlen(b64);
	unsigned char *bin = malloc(blen);
	size_t got = 0;
	CHECK(sodium_base642bin(bin, blen, b64, blen, NULL, &got, NULL,
				sodium_base64_VARIANT_ORIGINAL) == 0);
	CHECK_MSG(got == size, "%zu bytes decoded, not %zu", got, size);
	for (size_t i = 0; i < size; i++)
		if (bin[i] != bin_byte(i)) {
			CHECK_MSG(false, "byte %zu is %u, not %u", i, bin[i], bin_byte(i));
			break;
		}
	free(bin);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(files_download_20mb_exact, 300)
{
	size_t size = 20 * MIB + 2;
	char *id = iv_create(bk.paid_key, NULL);
	char cmd[1024];
	bin_command(cmd, sizeof(cmd), "/tmp/big.bin", size);
	struct client_resp r;
	iv_take("/execute", bk.paid_key,
		json_pack("{s:s,s:s,s:s,s:i}", "session_id", id, "command", cmd, "language", "bash",
			  "timeout", 120),
		&r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(client_must_int(r.json, "exit_code", r.body) == 0, "%s", r.body);
	client_resp_free(&r);
	size_t len = 0;
	char *data = iv_download_ok(bk.paid_key, id, "/tmp/big.bin", &len);
	CHECK_MSG(len == size, "%zu bytes downloaded, not %zu", len, size);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)data[i] != bin_byte(i)) {
			CHECK_MSG(false, "byte %zu differs", i);
			break;
		}
	free(data);
	free(id);
}

/* Resets the daemon's VmHWM to its current RSS; false when the kernel
 * does not let it. */
static bool hwm_reset(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)bk.d.pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

/* A GET of url on a raw connection that closes after the answer. */
static int raw_get(const char *url)
{
	int fd = raw_dial(bk.d.port, NULL, 0);
	if (fd < 0)
		return -1;
	char head[1024];
	int n = snprintf(head, sizeof(head),
			 "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
			 "Connection: close\r\n\r\n",
			 url, bk.paid_key);
	raw_send(fd, head, (size_t)n, 2000);
	return fd;
}

/* A 50 MiB file of \x01 bytes: valid UTF-8, each byte six in JSON. */
static char *ones_session(void)
{
	char *id = client_must_create(bk.paid_key, NULL);
	free(
	    client_must_run(bk.paid_key, id, "head -c 52428800 /dev/zero | tr '\\0' '\\1' > ones"));
	return id;
}

TEST_TIMEOUT(files_read_concurrent_peak_rss, 600)
{
	enum { N = 16 };
	char *id = ones_session();
	char url[256];
	snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=ones", id);
	CHECK(hwm_reset());
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	double t0 = client_now();
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			int fd = raw_get(url);
			enum raw_end end;
			size_t got = fd < 0 ? 0 : raw_drain(fd, 500000, &end);
			/* 300 MiB of "\u0001" and the fields around them. */
			_exit(got > 300 * MIB && end == RAW_EOF ? 0 : 1);
		}
	}
	int failed = 0;
	for (int i = 0; i < N; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	long peak = raw_proc_kb(bk.d.pid, "VmHWM");
	fprintf(
	    stderr,
	    "    16 reads of 50 MiB at once: %.1f s, the daemon's peak RSS %ld MB over %ld MB\n",
	    client_now() - t0, (peak - before) / 1024, before / 1024);
	CHECK_MSG(failed == 0, "%d of the 16 reads did not get a whole answer", failed);
	CHECK_MSG(peak - before < 128 * 1024, "16 reads of 50 MiB took the daemon %ld MB further",
		  (peak - before) / 1024);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(files_read_unread_answers_bounded, 300)
{
	enum { N = 16 };
	char *id = ones_session();
	char url[256];
	snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=ones", id);
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	int fds[N];
	for (int i = 0; i < N; i++) {
		/* A small window: what the kernel holds for the client is small. */
		fds[i] = raw_dial(bk.d.port, NULL, 4096);
		CHECK(fds[i] >= 0);
		char head[1024];
		int n = snprintf(head, sizeof(head),
				 "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
				 url, bk.paid_key);
		raw_send(fds[i], head, (size_t)n, 2000);
	}
	sleep(5);
	long held = raw_proc_kb(bk.d.pid, "VmRSS");
	fprintf(stderr, "    16 answers of 300 MB nobody reads: the daemon grew %ld MB\n",
		(held - before) / 1024);
	CHECK_MSG(held - before < 64 * 1024, "16 unread answers held %ld MB of the daemon",
		  (held - before) / 1024);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* The session still answers at once: nothing of it is pinned. */
	struct client_resp r;
	read_call(id, "nothing-here", &r);
	CHECK_ERROR(&r, 404, "file_not_found");
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* ---- listings ---- */

static int path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST_TIMEOUT(files_list_cursor_pages, 300)
{
	char *id = client_must_create(bk.paid_key, NULL);
	/* 3000 files over nested directories whose names sort across '/'
	 * ("a-b" sorts between "a" and "a/..."). */
	free(client_must_run(bk.paid_key, id,
			     "mkdir -p t/a t/a-b t/a/x t/b && cd t && "
			     "for i in $(seq 1 1000); do : > a/f$i; done && "
			     "for i in $(seq 1 1000); do : > a-b/g$i; done && "
			     "for i in $(seq 1 996); do : > a/x/h$i; done"));
	/* Expected: every path, directories included, in strcmp order. */
	enum { MAX = 4000 };
	char **want = calloc(MAX, sizeof(char *));
	size_t nw = 0;
	want[nw++] = strdup("t/a");
	want[nw++] = strdup("t/a-b");
	want[nw++] = strdup("t/a/x");
	want[nw++] = strdup("t/b");
	char buf[64];
	for (int i = 1; i <= 1000; i++) {
		snprintf(buf, sizeof(buf), "t/a/f%d", i);
		want[nw++] = strdup(buf);
		snprintf(buf, sizeof(buf), "t/a-b/g%d", i);
		want[nw++] = strdup(buf);
		if (i <= 996) {
			snprintf(buf, sizeof(buf), "t/a/x/h%d", i);
			want[nw++] = strdup(buf);
		}
	}
	qsort(want, nw, sizeof(char *), path_cmp);
	size_t seen = 0, pages = 0;
	char cursor[1024] = "";
	for (;;) {
		char url[2048];
		snprintf(url, sizeof(url),
			 "/files/list?sessionId=%s&path=t&recursive=true&limit=100%s%s", id,
			 *cursor ? "&cursor=" : "", cursor);
		struct client_resp r;
		client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
		CHECK_STATUS(&r, 200);
		CHECK(client_must_int(r.json, "total", r.body) == (long long)nw);
		json_t *files = json_object_get(r.json, "files");
		CHECK(json_is_array(files));
		CHECK(json_array_size(files) <= 100);
		for (size_t i = 0; i < json_array_size(files); i++) {
			const char *p = client_must_str(json_array_get(files, i), "path", r.body);
			CHECK_MSG(seen < nw, "more entries than the %zu there are", nw);
			CHECK_MSG(strcmp(p, want[seen]) == 0, "entry %zu is '%s', not '%s'", seen,
				  p, want[seen]);
			seen++;
		}
		pages++;
		json_t *next = json_object_get(r.json, "nextCursor");
		CHECK_MSG(next != NULL, "no nextCursor in %.200s", r.body);
		if (json_is_null(next)) {
			client_resp_free(&r);
			break;
		}
		CHECK(json_is_string(next));
		char *enc = client_urlencode(json_string_value(next));
		snprintf(cursor, sizeof(cursor), "%s", enc);
		free(enc);
		client_resp_free(&r);
		CHECK(pages < 100);
	}
	CHECK_MSG(seen == nw, "%zu entries listed, not %zu", seen, nw);
	CHECK_MSG(pages == (nw + 99) / 100, "%zu pages", pages);
	/* offset still pages too, in the same order. */
	char url[512];
	snprintf(url, sizeof(url),
		 "/files/list?sessionId=%s&path=t&recursive=true&limit=5&offset=2000", id);
	struct client_resp r;
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *files = json_object_get(r.json, "files");
	CHECK(json_array_size(files) == 5);
	CHECK(strcmp(client_must_str(json_array_get(files, 0), "path", r.body), want[2000]) == 0);
	client_resp_free(&r);
	/* A cursor that is no cursor is 400 naming it. */
	snprintf(url, sizeof(url), "/files/list?sessionId=%s&cursor=%%25%%25", id);
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "cursor");
	client_resp_free(&r);
	for (size_t i = 0; i < nw; i++)
		free(want[i]);
	free(want);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(files_list_non_utf8_names, 120)
{
	char *id = client_must_create(bk.paid_key, NULL);
	free(client_must_run(bk.paid_key, id,
			     "mkdir n && cd n && : > \"$(printf 'bad\\377\\376')\" && "
			     ": > \"$(printf 'ctl\\001x')\" && : > \"$(printf 'nl\\nx')\" && "
			     ": > plain && : > \"$(printf 'caf\\303\\251')\""));
	char url[512];
	snprintf(url, sizeof(url), "/files/list?sessionId=%s&path=n", id);
	struct client_resp r;
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(r.json != NULL, "not JSON: %s", r.body);
	json_t *files = json_object_get(r.json, "files");
	CHECK(json_array_size(files) == 5);
	static const struct {
		const char *raw;
		bool b64;
	} want[] = {
	    {"n/bad\377\376", true}, {"n/caf\303\251", false}, {"n/ctl\001x", true},
	    {"n/nl\nx", true},	     {"n/plain", false},
	};
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(files, i);
		const char *p = client_must_str(e, "path", r.body);
		json_t *b = json_object_get(e, "pathBase64");
		if (!want[i].b64) {
			CHECK_MSG(strcmp(p, want[i].raw) == 0, "entry %zu is '%s'", i, p);
			CHECK_MSG(b == NULL, "entry '%s' has a pathBase64", p);
			continue;
		}
		CHECK_MSG(json_is_string(b), "entry %zu ('%s') has no pathBase64: %s", i, p,
			  r.body);
		unsigned char raw[256];
		size_t got = 0;
		const char *bs = json_string_value(b);
		CHECK(sodium_base642bin(raw, sizeof(raw), bs, strlen(bs), NULL, &got, NULL,
					sodium_base64_VARIANT_ORIGINAL) == 0);
		CHECK_MSG(got == strlen(want[i].raw) && memcmp(raw, want[i].raw, got) == 0,
			  "entry %zu's pathBase64 '%s' is not its bytes", i, bs);
	}
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(files_list_large_tree_holds_one_page, 300)
{
	char *id = client_must_create(bk.paid_key, NULL);
	/* 45 directories of 1,000 files, 12 levels of 200-byte names down, so
	 * that every path is some 2.5 KB: 45,057 entries, 110 MB of paths. */
	free(client_must_run(bk.paid_key, id,
			     "python3 -c 'import os\n"
			     "top=\"big/\" + \"/\".join([\"d\" * 200] * 12)\n"
			     "for d in range(45):\n"
			     "  p=\"%s/d%02d\" % (top, d); os.makedirs(p)\n"
			     "  for f in range(1000): open(\"%s/file-with-a-longish-name-%04d\" % "
			     "(p, f), \"w\").close()'"));
	char url[512];
	snprintf(url, sizeof(url), "/files/list?sessionId=%s&path=big&recursive=true&limit=1", id);
	CHECK(hwm_reset());
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	struct client_resp r;
	client_call(&bk.d, "GET", url, bk.paid_key, NULL, &r);
	long peak = raw_proc_kb(bk.d.pid, "VmHWM");
	CHECK_STATUS(&r, 200);
	fprintf(stderr,
		"    a page of 1 from 45,057 entries of 2.5 KB paths: %zu bytes in %.0f ms, the "
		"daemon's peak RSS %ld MB over %ld MB\n",
		r.body_len, r.seconds * 1000, (peak - before) / 1024, before / 1024);
	CHECK_MSG(peak - before < 16 * 1024, "a page of one entry took the daemon %ld MB further",
		  (peak - before) / 1024);
	CHECK(client_must_int(r.json, "total", r.body) == 45057);
	json_t *files = json_object_get(r.json, "files");
	CHECK(json_array_size(files) == 1);
	const char *first = client_must_str(json_array_get(files, 0), "path", r.body);
	CHECK_MSG(strlen(first) == 4 + 200, "first entry '%.40s...'", first);
	CHECK(json_is_string(json_object_get(r.json, "nextCursor")));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}
