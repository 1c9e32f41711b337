/* What the fakes' files share (tests/fakes.c the world, fake_store.c and
 * fake_backend.c its two views). */
#pragma once

#include "fakes.h"

#define MAX_KEYS 64
#define MAX_COUNTERS 64

struct fake_file {
	char *path;
	char *data;
	size_t len;
	struct fake_file *next;
};

/* Everything of one session id on the "host". */
struct fake_box {
	char id[32];
	bool disk;
	struct fake_file *disk_files;
	bool snapshot;
	struct fake_file *snap_files;
	int running;
	bool frozen;
	bool saved_frozen; /* its last save found its sandbox frozen, not ended */
	struct fake_box *next;
};

struct fake_rec {
	struct store_session s;
	struct fake_rec *next;
};

struct fake_idem {
	struct store_idem r;
	struct fake_idem *next;
};

/* A request with an Idempotency-Key in flight (struct store_ops'
 * idem_claim). */
struct fake_claim {
	char key_id[32];
	char idem_key[256];
	int64_t claimed_ms, expires_ms;
	struct fake_claim *next;
};

struct fake_task {
	struct store_task t;
	struct fake_task *next;
};

struct fake_world {
	pthread_mutex_t lock;
	char path[256];
	struct store_key keys[MAX_KEYS];
	int n_keys;
	struct fake_rec *sessions;
	struct fake_idem *idem;
	struct fake_claim *claims;
	struct fake_box *boxes;
	struct fake_task *tasks;
	int steps;
	int crash_at; /* absolute step count; 0: none */
	struct {
		char op[32];
		int left; /* 0: a free entry */
	} fails[4];
	struct {
		char op[32];
		int n;
	} calls[MAX_COUNTERS];
};

/* The helpers of the world (tests/fakes.c); "with w->lock held" for each. */
void fake__files_free(struct fake_file *f);
struct fake_file *fake__files_copy(const struct fake_file *f);
int64_t fake__files_count(const struct fake_file *f);
const struct fake_file *fake__file_find(const struct fake_file *f, const char *path);
struct fake_box *fake__box_find(struct fake_world *w, const char *id, bool create);
struct fake_rec *fake__rec_find(struct fake_world *w, const char *id);
/* The start of an operation called op: fails it when told to. */
int fake__op(struct fake_world *w, const char *op, struct bk_err *err);
/* Counts a call of op. */
void fake__count_call(struct fake_world *w, const char *op);
/* One step that changes what survives a crash, about to happen. */
void fake__step(struct fake_world *w);
/* After a step: the world to its file. */
void fake__done(struct fake_world *w);
