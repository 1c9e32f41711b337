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
