/* Host id ranges (sandbox/slots.h): a bitmap under a lock. */
#include "sandbox/slots.h"

#include <string.h>

#include "util/err.h"

int sbx__slots_init(struct sbx_slots *s, int first, int count, struct bk_err *err)
{
	memset(s, 0, sizeof(*s));
	if (first == 0 && count == 0)
		count = SBX_MAX_SLOTS;
	if (first < 0 || count <= 0 || first > SBX_MAX_SLOTS - count)
		return bk_err_field(err, "slots", "id ranges %d..%d are not within 0..%d", first,
				    first + count - 1, SBX_MAX_SLOTS - 1);
	s->first = first;
	s->count = count;
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void sbx__slots_destroy(struct sbx_slots *s)
{
	if (s->count)
		pthread_mutex_destroy(&s->lock);
}

static bool slot_used(const struct sbx_slots *s, int slot)
{
	return s->used[slot / 64] & (1ull << (slot % 64));
}

int sbx__slots_take(struct sbx_slots *s)
{
	pthread_mutex_lock(&s->lock);
	int found = -1;
	for (int slot = s->first; slot < s->first + s->count; slot++) {
		/* A whole word taken: skip to the next one. */
		if (slot % 64 == 0 && s->used[slot / 64] == ~0ull &&
		    slot + 64 <= s->first + s->count) {
			slot += 63;
			continue;
		}
		if (!slot_used(s, slot)) {
			s->used[slot / 64] |= 1ull << (slot % 64);
			found = slot;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

bool sbx__slots_hold(struct sbx_slots *s, int slot)
{
	if (slot < s->first || slot >= s->first + s->count)
		return false;
	pthread_mutex_lock(&s->lock);
	bool was = slot_used(s, slot);
	s->used[slot / 64] |= 1ull << (slot % 64);
	pthread_mutex_unlock(&s->lock);
	return !was;
}

void sbx__slots_release(struct sbx_slots *s, int slot)
{
	if (slot < s->first || slot >= s->first + s->count)
		return;
	pthread_mutex_lock(&s->lock);
	s->used[slot / 64] &= ~(1ull << (slot % 64));
	pthread_mutex_unlock(&s->lock);
}

int sbx__slot_of_base(unsigned base)
{
	if (base < SBX_ID_BASE || (base - SBX_ID_BASE) % SBX_ID_RANGE != 0)
		return -1;
	unsigned slot = (base - SBX_ID_BASE) / SBX_ID_RANGE;
	return slot < SBX_MAX_SLOTS ? (int)slot : -1;
}
