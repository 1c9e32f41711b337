/* bunker: the administration tool.
 *
 *   bunker keys create --plan P [--max-sessions N ...]  prints a new API key
 *                                                        once; only its hash
 *                                                        is stored
 *   bunker keys list [--json]                            id, plan, times and
 *                                                        overrides, never a
 *                                                        secret
 *   bunker keys revoke KEY_ID                            refused from the
 *                                                        next request on
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sandbox/sandbox.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/util.h"

static void usage(FILE *f)
{
	fputs(
	    "usage: bunker [--data-dir DIR] [--store URI] keys create --plan "
	    "free|paid|enterprise [overrides]\n"
	    "       bunker [--data-dir DIR] [--store URI] keys list [--json]\n"
	    "       bunker [--data-dir DIR] [--store URI] keys revoke KEY_ID\n"
	    "--store: sqlite:PATH (DIR/bunker.db) or postgres://... (bunkerd's --store)\n"
	    "overrides (each replaces the plan's number for this key):\n"
	    "  --max-sessions N      concurrent sessions\n"
	    "  --max-ttl S           longest session ttl, seconds\n"
	    "  --memory-max MB       memory ceiling of a session\n"
	    "  --cpu-max CORES       cpu ceiling of a session (fraction allowed)\n"
	    "  --disk-max MB         disk ceiling of a session\n"
	    "  --timeout-default S   execution timeout when none is given\n"
	    "  --timeout-max S       longest execution timeout\n"
	    "  --rpm N               requests per minute\n"
	    "  --max-file-size B     largest file, bytes\n"
	    "  --egress 0|1          may its sessions have outbound network\n"
	    "  --egress-default 0|1  policy of a create that names none: none, package registries\n"
	    "  --egress-mbps N       outbound and inbound bandwidth cap of a session, Mbit/s\n"
	    "  --egress-connections N  connections a session may have open at once\n",
	    f);
}

static int keys_create(struct core *core, int argc, char **argv)
{
	const char *plan = "free";
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		const char *name = argv[i] + 2, *value = argv[++i];
		if (strcmp(name, "plan") == 0) {
			plan = value;
		} else if (plan_overrides_set(&ov, name, value, &err) < 0) {
			fprintf(stderr, "bunker: --%s: %s\n", name, err.msg);
			return 2;
		}
	}
	char secret[128];
	struct core_key key;
	if (core_key_create(core, plan, &ov, secret, sizeof(secret), &key, &err) < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	char text[512] = "{}";
	plan_overrides_format(&ov, text, sizeof(text), NULL);
	printf("%s\n", secret);
	fprintf(stderr, "created key %s on plan '%s'%s%s (shown once; only its hash is stored)\n",
		key.id, key.plan, ov.set ? " with " : "", ov.set ? text : "");
	return 0;
}

static inline void cli_json_release(json_t **j)
{
	json_decref(*j);
}

static int keys_list(struct core *core, int argc, char **argv)
{
	bool as_json = argc == 1 && strcmp(argv[0], "--json") == 0;
	if (argc > 0 && !as_json) {
		usage(stderr);
		return 2;
	}
	struct bk_err err = BK_ERR_INIT;
	_cleanup_free_ struct core_key_info *keys = NULL;
	size_t n;
	if (core_key_list(core, &keys, &n, &err) < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	__attribute__((cleanup(cli_json_release))) json_t *arr = json_array();
	if (!as_json)
		printf("%-21s %-10s %-24s %-24s %s\n", "ID", "PLAN", "CREATED", "REVOKED",
		       "OVERRIDES");
	for (size_t i = 0; i < n; i++) {
		char created[40], revoked[40] = "-", overrides[512] = "{}";
		iso8601_ms(keys[i].created_ms, created, sizeof(created));
		if (keys[i].revoked_ms)
			iso8601_ms(keys[i].revoked_ms, revoked, sizeof(revoked));
		plan_overrides_format(&keys[i].overrides, overrides, sizeof(overrides), NULL);
		if (!as_json) {
			printf("%-21s %-10s %-24s %-24s %s\n", keys[i].id, keys[i].plan, created,
			       revoked, overrides);
			continue;
		}
		json_t *ov = json_loads(overrides, 0, NULL);
		json_array_append_new(
		    arr, json_pack("{s:s,s:s,s:s,s:o,s:o}", "id", keys[i].id, "plan", keys[i].plan,
				   "created", created, "revoked",
				   keys[i].revoked_ms ? json_string(revoked) : json_null(),
				   "overrides", ov ? ov : json_object()));
	}
	if (as_json) {
		_cleanup_free_ char *text = json_dumps(arr, JSON_INDENT(2));
		if (text == NULL) {
			fprintf(stderr, "bunker: cannot format the key list\n");
			return 1;
		}
		printf("%s\n", text);
	}
	return 0;
}

static int keys_revoke(struct core *core, int argc, char **argv)
{
	if (argc != 1) {
		usage(stderr);
		return 2;
	}
	struct bk_err err = BK_ERR_INIT;
	if (core_key_revoke(core, argv[0], &err) < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	fprintf(stderr, "revoked key %s\n", argv[0]);
	return 0;
}

int main(int argc, char **argv)
{
	const char *data_dir = "/var/lib/bunker";
	const char *store_uri = NULL; /* NULL: DIR/bunker.db */
	int i = 1;
	while (i + 1 < argc) {
		if (strcmp(argv[i], "--data-dir") == 0)
			data_dir = argv[i + 1];
		else if (strcmp(argv[i], "--store") == 0)
			store_uri = argv[i + 1];
		else
			break;
		i += 2;
	}
	if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (i + 1 >= argc || strcmp(argv[i], "keys") != 0) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[i + 1];
	int (*run)(struct core *, int, char **) = strcmp(verb, "create") == 0	? keys_create
						  : strcmp(verb, "list") == 0	? keys_list
						  : strcmp(verb, "revoke") == 0 ? keys_revoke
										: NULL;
	if (run == NULL) {
		usage(stderr);
		return 2;
	}
	struct bk_err err = BK_ERR_INIT;
	char db[600];
	if (strlen(data_dir) > SBX_DIR_MAX ||
	    path_fmt(db, sizeof(db), "%s/bunker.db", data_dir) < 0) {
		fprintf(stderr, "bunker: --data-dir is too long (%zu bytes; at most %d)\n",
			strlen(data_dir), SBX_DIR_MAX);
		return 2;
	}
	struct store *store;
	struct core *core;
	if ((store_uri == NULL && mkdir_p(data_dir, 0711, &err) < 0) ||
	    store_open(store_uri ? store_uri : db, &store, &err) < 0 ||
	    core_open_store(store, &core, &err) < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	int rc = run(core, argc - i - 2, argv + i + 2);
	core_close(core);
	return rc;
}
