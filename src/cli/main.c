/* bunker: the administration tool. `bunker keys create --plan P` prints a
 * new API key once; only its hash is stored. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static void usage(FILE *f)
{
	fputs("usage: bunker [--data-dir DIR] keys create --plan free|paid|enterprise\n", f);
}

int main(int argc, char **argv)
{
	const char *data_dir = "/var/lib/bunker";
	const char *plan = "free";
	int i = 1;
	if (i + 1 < argc && strcmp(argv[i], "--data-dir") == 0) {
		data_dir = argv[i + 1];
		i += 2;
	}
	if (i + 1 >= argc || strcmp(argv[i], "keys") != 0 || strcmp(argv[i + 1], "create") != 0) {
		usage(stderr);
		return 2;
	}
	for (i += 2; i < argc; i++) {
		if (strcmp(argv[i], "--plan") == 0 && i + 1 < argc)
			plan = argv[++i];
		else {
			usage(stderr);
			return 2;
		}
	}
	struct bk_err err;
	struct core *core;
	if (core_open_store(data_dir, &core, &err) < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	char secret[128];
	struct core_key key;
	int r = core_key_create(core, plan, secret, sizeof(secret), &key, &err);
	core_close(core);
	if (r < 0) {
		fprintf(stderr, "bunker: %s\n", err.msg);
		return 1;
	}
	printf("%s\n", secret);
	fprintf(stderr, "created key %s on plan '%s' (shown once; only its hash is stored)\n",
		key.id, key.plan);
	return 0;
}
