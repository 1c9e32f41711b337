/* Fuzz target: the InstaVM dialect's request parsers (src/api/instavm.c,
 * instavm_exec.c): POST /v1/sessions/session's body and /execute's, after
 * the body checks every request goes through (api_body_object()), with
 * FastAPI's error list for every field at fault. Input: the body. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/instavm_int.h"

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
	char *metadata = NULL;
	struct core_env *env = NULL;
	struct bk_err e1 = BK_ERR_INIT;
	if (instavm__create_parse(j, &spec, &metadata, &env, &e1) == 0) {
		check(spec.vcpu == 1 || spec.vcpu == 2 || spec.vcpu == 4 || spec.vcpu == 6 ||
		      spec.vcpu == 8);
		check(spec.vm_lifetime_s >= 20 && spec.vm_lifetime_s <= 86400);
		for (size_t i = 0; i < spec.n_env; i++)
			check(env[i].name != NULL && env[i].value != NULL);
	} else {
		check(bk_err_is_set(&e1));
	}
	free(metadata);
	free(env);

	struct iv_exec x;
	struct bk_err e2 = BK_ERR_INIT;
	if (instavm__exec_parse(j, &x, &e2) == 0) {
		check(x.id != NULL && x.code != NULL);
		check(x.timeout_s >= 1 && x.timeout_s <= 600);
		instavm_id_form(x.id);
	} else {
		check(bk_err_is_set(&e2));
	}
	const char *id;
	struct bk_err e3 = BK_ERR_INIT;
	if (instavm_body_session(j, &id, &e3) == 0)
		instavm_id_form(id);
	json_decref(j);
	free(body);
	return 0;
}
