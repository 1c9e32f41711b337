/* Figures about the whole daemon, for GET /metrics. */
#include "core/core_int.h"

int64_t core_session_total(struct core *core)
{
	int64_t n = 0;
	pthread_mutex_lock(&core->lock);
	for (struct session *s = core->sessions; s; s = s->next)
		n++;
	pthread_mutex_unlock(&core->lock);
	return n;
}
