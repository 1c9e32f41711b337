/* api/: byte strings into JSON, request paths. */
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "api/api_int.h"

static char *dump(json_t *j)
{
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
	json_decref(j);
	return s;
}

TEST(json_bytes_keeps_valid_utf8)
{
	char *s = dump(api_json_bytes("h\xc3\xa9llo \xe2\x82\xac", 10));
	CHECK_STR_EQ(s, "\"h\\u00E9llo \\u20AC\"");
	free(s);
}

TEST(json_bytes_replaces_invalid_sequences)
{
	/* a lone continuation byte, an overlong '/', a surrogate, a cut sequence */
	const char in[] = "a\x80"
			  "b\xc0\xaf"
			  "c\xed\xa0\x80"
			  "d\xe2\x82";
	char *s = dump(api_json_bytes(in, sizeof(in) - 1));
	CHECK(s != NULL);
	CHECK(strstr(s, "\\uFFFD") != NULL);
	CHECK(s[1] == 'a');
	CHECK(strchr(s, 'b') && strchr(s, 'c') && strchr(s, 'd'));
	free(s);
}

TEST(json_bytes_keeps_nul)
{
	char *s = dump(api_json_bytes("a\0b", 3));
	CHECK_STR_EQ(s, "\"a\\u0000b\"");
	free(s);
}

TEST(path_normalize)
{
	char out[256];
	struct bk_err err = BK_ERR_INIT;
	CHECK(core_path_normalize("a/b.txt", "path", out, sizeof(out), &err) == 0);
	CHECK_STR_EQ(out, "a/b.txt");
	CHECK(core_path_normalize("/workspace/x//./y/", "path", out, sizeof(out), &err) == 0);
	CHECK_STR_EQ(out, "x/y");
	CHECK(core_path_normalize("/workspace", "path", out, sizeof(out), &err) == 0);
	CHECK_STR_EQ(out, "");
	CHECK(core_path_normalize("../etc/passwd", "path", out, sizeof(out), &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, "path");
	CHECK(core_path_normalize("a/../../b", "path", out, sizeof(out), &err) < 0);
	CHECK(core_path_normalize("/etc/passwd", "path", out, sizeof(out), &err) < 0);
	CHECK(core_path_normalize("/workspacex/a", "path", out, sizeof(out), &err) < 0);
	CHECK(core_path_normalize("", "path", out, sizeof(out), &err) < 0);
	char tiny[4];
	CHECK(core_path_normalize("abcdef", "path", tiny, sizeof(tiny), &err) < 0);
}

/* A JSON text of n values in an array nested depth deep. */
static char *json_of(int depth, int values)
{
	size_t cap = (size_t)depth * 2 + (size_t)values * 2 + 16;
	char *s = malloc(cap);
	CHECK(s != NULL);
	size_t k = 0;
	for (int i = 0; i < depth; i++)
		s[k++] = '[';
	for (int i = 0; i < values; i++) {
		s[k++] = i ? ',' : '1';
		if (i)
			s[k++] = '1';
	}
	for (int i = 0; i < depth; i++)
		s[k++] = ']';
	s[k] = '\0';
	return s;
}

TEST(json_check_depth_and_values)
{
	struct bk_err err = BK_ERR_INIT;
	/* 64 levels with 99,936 numbers in the innermost: 100,000 values. */
	char *s = json_of(API_JSON_DEPTH_MAX, API_JSON_VALUES_MAX - API_JSON_DEPTH_MAX);
	CHECK_INT_EQ(api_json_check(s, strlen(s), &err), 0);
	free(s);
	s = json_of(API_JSON_DEPTH_MAX + 1, 1);
	CHECK_INT_EQ(api_json_check(s, strlen(s), &err), -1);
	CHECK_STR_EQ(err.field, "body");
	CHECK(strstr(err.msg, "64") != NULL);
	free(s);
	bk_err_clear(&err);
	s = json_of(1, API_JSON_VALUES_MAX);
	CHECK_INT_EQ(api_json_check(s, strlen(s), &err), -1);
	CHECK_STR_EQ(err.field, "body");
	free(s);

	/* Brackets and commas inside strings, escaped quotes, names of
	 * members: none of them counts. */
	static const char text[] = "{\"a[[[\\\"]]],\":\"x,y{\",\"b\":[true,false,null,-1.5e3]}";
	bk_err_clear(&err);
	CHECK_INT_EQ(api_json_check(text, sizeof(text) - 1, &err), 0);
	char deep[200];
	memset(deep, '[', sizeof(deep));
	CHECK_INT_EQ(api_json_check(deep, sizeof(deep), NULL), -1);
	/* Strings are skipped whole, even when the text ends inside one. */
	CHECK_INT_EQ(api_json_check("\"[[[[", 5, NULL), 0);
}

/* Bytes that exercise every path of a JSON string's encoding: ASCII,
 * what must be escaped, valid sequences of 2-4 bytes, and what is not
 * UTF-8 (lone continuations, overlong forms, surrogates, cut sequences). */
static size_t random_output(char *out, size_t cap)
{
	static const char *const units[] = {"a",
					    "Z",
					    " ",
					    "\"",
					    "\\",
					    "/",
					    "\x01",
					    "\x1f",
					    "\x7f",
					    "\n",
					    "\t",
					    "\b",
					    "\f",
					    "\r",
					    "",
					    "\xc3\xa9",
					    "\xe2\x82\xac",
					    "\xf0\x9f\x98\x80",
					    "\x80",
					    "\xc0\xaf",
					    "\xed\xa0\x80",
					    "\xe2\x82",
					    "\xff",
					    "\xf4\x90\x80\x80"};
	size_t n = 0, want = (size_t)rand() % (cap / 8);
	while (n < want) {
		size_t u = (size_t)rand() % (sizeof(units) / sizeof(units[0]));
		/* "" stands for a NUL byte. */
		size_t len = units[u][0] ? strlen(units[u]) : 1;
		memcpy(out + n, units[u], len);
		n += len;
	}
	return n;
}

TEST(exec_answer_is_what_jansson_writes)
{
	srand(12);
	for (int round = 0; round < 300; round++) {
		char out[4096], err[4096];
		size_t lo = random_output(out, sizeof(out)), le = random_output(err, sizeof(err));
		bool more = round % 3 == 0, wrap = round % 4 == 0;
		/* What api/ wrote before: jansson's text of the whole object. */
		json_t *want = json_pack("{s:o,s:o}", "stdout", api_json_bytes(out, lo), "stderr",
					 api_json_bytes(err, le));
		if (more) {
			char *joined = NULL;
			size_t jl = 0;
			FILE *f = open_memstream(&joined, &jl);
			fwrite(json_string_value(json_object_get(want, "stderr")), 1,
			       json_string_length(json_object_get(want, "stderr")), f);
			fputs("\nmore\x01\n", f);
			fclose(f);
			json_object_set_new(want, "stderr", json_stringn(joined, jl));
			free(joined);
		}
		json_object_set_new(want, "exitCode", json_integer(round));
		json_object_set_new(want, "time", json_real(round / 7.0));
		json_object_set_new(want, "list", json_pack("[s,b]", "p\x01", 1));
		if (wrap)
			want = json_pack("{s:{s:s,s:o}}", "error", "code", "c\"", "details", want);
		char *want_text = json_dumps(want, JSON_COMPACT | JSON_REAL_PRECISION(15));
		json_decref(want);

		struct core_exec_result res = {.stdout_len = lo, .stderr_len = le};
		res.stdout_text = malloc(lo + 1);
		res.stderr_text = malloc(le + 1);
		memcpy(res.stdout_text, out, lo);
		memcpy(res.stderr_text, err, le);
		json_t *rest = json_pack("{s:i,s:f,s:[s,b]}", "exitCode", round, "time",
					 round / 7.0, "list", "p\x01", 1);
		struct api_answer *a =
		    api_answer_new(wrap ? "{\"error\":{\"code\":\"c\\\"\",\"details\":" : "", &res,
				   more ? "\nmore\x01\n" : NULL, rest, wrap ? "}}" : "");
		CHECK(a != NULL);
		CHECK_INT_EQ(api_answer_len(a), strlen(want_text));
		/* Read in pieces of every small size: units cut at every place. */
		char *got = malloc(strlen(want_text) + 64);
		size_t n = 0;
		for (;;) {
			size_t max = 1 + (size_t)rand() % 13;
			ssize_t r = api_answer_read(a, got + n, max);
			CHECK(r >= 0 && (size_t)r <= max);
			if (r == 0)
				break;
			n += (size_t)r;
			CHECK(n <= strlen(want_text));
		}
		got[n] = '\0';
		CHECK_STR_EQ(got, want_text);
		free(got);
		free(want_text);
		api_answer_free(a);
	}
}
