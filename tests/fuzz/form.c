/* Fuzz target: percent- and form-decoding of
 * application/x-www-form-urlencoded bodies (instavm_form_get(),
 * src/api/instavm.c) and the router's matching of request paths against
 * route patterns with {name} segments (api_route_match(),
 * src/api/router.c). Input: the body or path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/instavm_int.h"
#include "util/util.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static const char *const patterns[] = {
    "/sessions/{id}",	    "/v1/sessions/{session_id}/app-url/{port}", "/v1/executions/{task_id}",
    "/{a}/{b}/{c}/{d}/{e}", "/v1/sessions/status/{session_id}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size ? size : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	static const char *const names[] = {"session_id", "remote_path", "", "a b", "%"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char *v = NULL;
		int r = instavm_form_get(body, size, names[i], &v);
		check(r >= -1 && r <= 1);
		check((r == 1) == (v != NULL));
		if (v)
			check(strlen(v) <= size && api_utf8_valid(v));
		free(v);
	}
	free(body);

	char *path = strndup((const char *)data, size);
	if (path == NULL)
		return 0;
	struct api_call c;
	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < ARRAY_SIZE(patterns); i++) {
		if (api_route_match(patterns[i], path, &c)) {
			for (int k = 0; k < API_PARAMS_MAX && c.param[k]; k++)
				check(c.param[k][0] != '\0' && strchr(c.param[k], '/') == NULL);
		}
		api_route_match(patterns[i], path, NULL);
	}
	free(path);
	return 0;
}
