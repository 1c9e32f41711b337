/* Host id ranges: which of the backend's ranges are taken.
 *
 * A session's ids 0..SBX_ID_RANGE-1 map to the host range of one slot,
 * SBX_ID_BASE + slot * SBX_ID_RANGE, which no host user and no other
 * session has. A slot is held while the session's files are on a disk of
 * the host (its files are owned by the slot's ids) and is free again once
 * they are saved or gone: a sleeping session holds none, and gets whichever
 * is free when it wakes (its snapshot records ids as the session sees
 * them). Thread safe.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define SBX_ID_BASE 1000000000u
#define SBX_ID_RANGE 65536u
#define SBX_MAX_SLOTS 16384

struct sbx_slots {
	pthread_mutex_t lock;
	int first, count; /* the slots of this backend: [first, first + count) */
	uint64_t used[SBX_MAX_SLOTS / 64];
};

/* Slots first..first+count-1 (0 and 0: all), none taken. BK_E_INVALID
 * when the range does not fit in SBX_MAX_SLOTS. */
int sbx__slots_init(struct sbx_slots *s, int first, int count, struct bk_err *err);
void sbx__slots_destroy(struct sbx_slots *s);
/* Takes the lowest free slot: its number, or -1 when all are taken. */
int sbx__slots_take(struct sbx_slots *s);
/* Marks slot taken (a disk found at start-up): false when it is not one of
 * this backend's, or already taken. */
bool sbx__slots_hold(struct sbx_slots *s, int slot);
void sbx__slots_release(struct sbx_slots *s, int slot);
/* The host uid (and gid) that a session's id 0 maps to in slot. */
static inline unsigned sbx__slot_base(int slot)
{
	return SBX_ID_BASE + (unsigned)slot * SBX_ID_RANGE;
}
/* The slot whose range starts at host id base, or -1. */
int sbx__slot_of_base(unsigned base);
