/* Fuzz target: how the front door picks a preview from a client's first
 * head: its Host as a preview host (core_preview_host(),
 * src/core/preview.c: "ses-<id>.<domain>", "vm-<id>-<port>.<domain>") and
 * its request-target as the path proxy's "/v1/app/<id>/<port>"
 * (api__preview_app_path(), src/api/preview.c). Input: the Host, '\n',
 * the target. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/core_int.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void host_check(const struct core *core, const char *host)
{
	char id[64];
	int port = -1;
	if (core_preview_host(core, host, id, sizeof(id), &port)) {
		check(strlen(id) == 24 && core_session_id_form(id, strlen(id)));
		check(port > 0 && port <= 65535);
	}
	char small[8];
	check(!core_preview_host(core, host, small, sizeof(small), &port));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t hl = nl ? (size_t)(nl - data) : size;
	/* As the door leaves them: NUL-terminated, cut to its buffers. */
	char *host = strndup((const char *)data, hl < 319 ? hl : 319);
	char *target = nl ? strndup((const char *)nl + 1, size - hl - 1) : strdup("/");
	if (host == NULL || target == NULL)
		abort();
	static struct core core;
	strcpy(core.cfg.preview_domain, "preview.test");
	host_check(&core, host);
	strcpy(core.cfg.preview_domain, "localhost:8080");
	host_check(&core, host);

	char id[64], prefix[64];
	int port = -1;
	if (api__preview_app_path(target, id, sizeof(id), &port, prefix, sizeof(prefix))) {
		check(core_session_id_form(id, strlen(id)));
		check(port > 0 && port <= 65535);
		check(strncmp(target, prefix, strlen(prefix)) == 0);
		char *rest = target + strlen(prefix);
		check(*rest == '\0' || *rest == '/' || *rest == '?');
	}
	free(host);
	free(target);
	return 0;
}
