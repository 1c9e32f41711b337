/* Session metadata: what a record may hold, and the containment filter of
 * listings. Here rather than in a store, so that every store gives both
 * the same meaning. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

int core__metadata_check(const char *text, const char *field, struct bk_err *err)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	bool object = json_is_object(j);
	json_decref(j);
	if (!object)
		return bk_err_field(err, field, "%s must be a JSON object", field);
	if (strlen(text) > CORE_METADATA_MAX)
		return bk_err_field(err, field, "%s is %zu bytes of compact JSON, over %d", field,
				    strlen(text), CORE_METADATA_MAX);
	return 0;
}

struct core_metadata_filter {
	json_t *want;
};

int core__metadata_filter_new(const char *filter_json, struct core_metadata_filter **out,
			      struct bk_err *err)
{
	json_error_t je;
	json_t *want = json_loads(filter_json, JSON_REJECT_DUPLICATES, &je);
	if (want == NULL)
		return bk_err_field(err, "metadata",
				    "metadata filter is not valid json: %s at line %d, column %d",
				    je.text, je.line, je.column);
	if (!json_is_object(want)) {
		json_decref(want);
		return bk_err_field(err, "metadata", "metadata filter must be a json object");
	}
	struct core_metadata_filter *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		json_decref(want);
		return bk_err_set(err, ENOMEM, "cannot filter sessions");
	}
	f->want = want;
	*out = f;
	return 0;
}

void core__metadata_filter_free(struct core_metadata_filter *f)
{
	if (f == NULL)
		return;
	json_decref(f->want);
	free(f);
}

/* True when doc contains filter: every member of an object filter is in doc
 * (an object doc) and contains-or-equals the filter's value; anything else
 * (arrays included) must be equal. */
static bool json_contains(json_t *doc, json_t *filter)
{
	if (!json_is_object(filter) || !json_is_object(doc))
		return json_equal(doc, filter);
	const char *name;
	json_t *want;
	json_object_foreach (filter, name, want) {
		json_t *have = json_object_get(doc, name);
		if (have == NULL || !json_contains(have, want))
			return false;
	}
	return true;
}

bool core__metadata_match(void *filter, const char *metadata)
{
	struct core_metadata_filter *f = filter;
	json_error_t je;
	json_t *doc = json_loads(metadata, 0, &je);
	/* A record that does not parse matches nothing (records are checked
	 * on the way in). */
	bool ok = doc != NULL && json_contains(doc, f->want);
	json_decref(doc);
	return ok;
}
