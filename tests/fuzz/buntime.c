/* Fuzz target: the buntime dialect's request parsers
 * (src/api/buntime.c): POST /sessions/create's body and POST /execute's
 * (files with base64 contents, env), after the body checks every request
 * goes through (api_body_object()). Input: the body. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/buntime_int.h"
#include "core/core_int.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size + 1);
	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	body[size] = '\0';
	struct http_request req = {
	    .method = "POST", .path = "/execute", .body = body, .body_len = size};
	struct bk_err err = BK_ERR_INIT;
	json_t *j = api_body_object(&req, true, &err);
	if (j == NULL) {
		free(body);
		return 0;
	}
	struct core_session_spec spec;
	char *metadata = NULL, *network = NULL;
	struct bk_err e1 = BK_ERR_INIT;
	if (buntime__create_spec(j, &spec, &metadata, &network, &e1) == 0) {
		check(spec.ttl_s >= 0 && spec.limits.memory_mb >= 0 && spec.limits.disk_mb >= 0);
		check(spec.metadata == NULL || spec.metadata == metadata);
		if (metadata) {
			struct bk_err e = BK_ERR_INIT;
			core__metadata_check(metadata, "metadata", &e);
		}
	} else {
		check(bk_err_is_set(&e1));
	}
	free(metadata);
	free(network);

	struct buntime_exec_input in;
	const char *id = NULL;
	struct bk_err e2 = BK_ERR_INIT;
	if (buntime__exec_parse(j, &in, &id, &e2) == 0) {
		check(id != NULL);
		check((in.req.code == NULL) != (in.req.command == NULL));
		for (size_t i = 0; i < in.req.n_files; i++) {
			check(in.req.files[i].path != NULL);
			if (in.req.files[i].len)
				check(in.req.files[i].content != NULL);
			/* Every byte of the decoded content is there to read. */
			const struct core_file *f = &in.req.files[i];
			volatile char c = f->len ? f->content[f->len - 1] : 0;
			(void)c;
		}
		for (size_t i = 0; i < in.req.n_env; i++)
			check(in.req.env[i].name != NULL && in.req.env[i].value != NULL);
	} else {
		check(bk_err_is_set(&e2));
	}
	buntime__exec_input_release(&in);
	json_decref(j);
	free(body);
	return 0;
}
