/* Fuzz target: the front door's look at a first request head
 * (http__head_scan(), src/http/accept.c) and the field-line readers every
 * http/ parser shares (src/http/http_text.c), on any bytes a client sends
 * before its first CRLF CRLF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "http/http_text.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* What recv(MSG_PEEK) gives: not NUL-terminated, exactly size bytes. */
	char *buf = malloc(size ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	char host[320], method[16], target[1024];
	memset(method, 0, sizeof(method));
	memset(target, 0, sizeof(target));
	char hop[128];
	bool has_hop = false;
	memset(hop, 0, sizeof(hop));
	int r = http__head_scan(buf, size, host, sizeof(host), method, sizeof(method), target,
				sizeof(target), "X-Bunker-Relay", hop, sizeof(hop), &has_hop);
	check(memchr(hop, '\0', sizeof(hop)) != NULL);
	check(r >= -1 && r <= 1);
	check(memchr(host, '\0', sizeof(host)) != NULL);
	check(memchr(method, '\0', sizeof(method)) != NULL);
	check(memchr(target, '\0', sizeof(target)) != NULL);
	if (r == 1)
		check(host[0] != '\0');
	/* A small host buffer: the value that does not fit is refused, not cut. */
	char small[8];
	http__head_scan(buf, size, small, sizeof(small), method, 1, target, 1, NULL, hop, 1,
			&has_hop);
	check(memchr(small, '\0', sizeof(small)) != NULL);

	/* Every line as a field line, a Content-Length, a chunk size, a list. */
	for (size_t pos = 0; pos < size;) {
		const char *nl = memchr(buf + pos, '\n', size - pos);
		size_t n = nl ? (size_t)(nl - (buf + pos)) : size - pos;
		const char *line = buf + pos;
		struct http_field f;
		if (http__field_parse(line, n, &f)) {
			check(f.name == line && f.name_len < n);
			check(f.value >= line && f.value + f.value_len <= line + n);
			check(http__is_token(f.name, f.name_len));
			uint64_t cl = 0;
			if (http__parse_content_length(f.value, f.value_len, &cl) == 0)
				check(cl < 1000000000000000000ull);
			http__list_has(f.value, f.value_len, "chunked", true);
			http__list_has(f.value, f.value_len, "upgrade", false);
			http__eq_ci(f.name, f.name_len, "host");
		} else if (http__field_split(line, n, &f)) {
			check(f.value + f.value_len <= line + n);
		}
		uint64_t sz = 0;
		if (http__parse_chunk_size(line, n, &sz) == 0)
			check(sz < (1ull << 60));
		http__is_field_value(line, n);
		pos += n + 1;
	}
	free(buf);
	return 0;
}
