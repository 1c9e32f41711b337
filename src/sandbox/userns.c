/* The session's user namespace: ids 0..SBX_ID_RANGE-1 inside map to a host
 * range that belongs to this session alone, so that nothing a session owns
 * is owned by a host user or by another session. */
#include <stdio.h>

#include "sandbox/ns_int.h"

int ns__userns_setup_parent(pid_t pid, int slot, struct bk_err *err)
{
	char path[64], map[64];
	unsigned base = sbx__slot_base(slot);
	snprintf(map, sizeof(map), "0 %u %u\n", base, SBX_ID_RANGE);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (write_file_str(path, map, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	return write_file_str(path, map, err);
}
