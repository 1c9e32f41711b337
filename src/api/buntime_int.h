/* The buntime dialect's request parsers (api/buntime.c), non-static so
 * that tests/fuzz/buntime.c reaches them without HTTP. */
#pragma once

#include "api/api_int.h"

/* POST /sessions/create's body into *spec (every pointer borrowed from
 * body, but *metadata and *network, compact JSON, which the caller frees,
 * also on failure). -1 with err naming the field. */
int buntime__create_spec(json_t *body, struct core_session_spec *spec, char **metadata,
			 char **network, struct bk_err *err);

/* POST /execute's body as parsed: req's strings borrowed from the body,
 * files, env and the base64-decoded contents owned. */
struct buntime_exec_input {
	struct core_exec_req req;
	bool stream;
	struct core_file *files;
	struct core_env *env;
	unsigned char **decoded; /* n_decoded entries, NULL where not base64 */
	size_t n_decoded;
};

/* Parses body into *in (which it initialises; release it whatever it
 * returns) and the session's id into *id (borrowed). -1 with err naming
 * the field. */
int buntime__exec_parse(json_t *body, struct buntime_exec_input *in, const char **id,
			struct bk_err *err);
void buntime__exec_input_release(struct buntime_exec_input *in);
