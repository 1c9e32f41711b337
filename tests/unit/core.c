/* Unit tests of core/ against the fakes (tests/fakes.h): the warm pool's
 * adoption, create's rollback, the session cap, idle and deep-sleep
 * timing, and the crash-recovery matrix: every transition crashed at
 * every step, then started again. No sandbox runs and no database is
 * opened. */
#include "../harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fakes.h"
#include "core/core_int.h"

static char base_dir[] = "/tmp/bk-unit-core-XXXXXX";

int harness_setup(void)
{
	return mkdtemp(base_dir) == NULL;
}

void harness_teardown(void)
{
	rm_rf(base_dir, NULL);
}

struct fixture {
	struct fake_world *w;
	struct core *core;
	struct core_key key;
	char secret[128];
};

static struct core_config config(int warm_pool, int idle_s, int deep_s)
{
	return (struct core_config){
	    .preview_scheme = "http",
	    .preview_domain = "localhost:8080",
	    .warm_pool = warm_pool,
	    .idle_after_s = idle_s,
	    .deep_sleep_after_s = deep_s,
	};
}

/* A core over w (taken by the fixture). */
static void core_over(struct fixture *f, struct fake_world *w, const struct core_config *cfg)
{
	struct bk_err err = BK_ERR_INIT;
	f->w = w;
	CHECK_MSG(core_open(cfg, fake_store_new(w), fake_backend_new(w), &f->core, &err) == 0,
		  "core_open: %s", err.msg);
}

static void fixture_open(struct fixture *f, const char *path, const struct core_config *cfg,
			 const char *plan)
{
	memset(f, 0, sizeof(*f));
	core_over(f, fake_world_new(path), cfg);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(
	    core_key_create(f->core, plan, NULL, f->secret, sizeof(f->secret), &f->key, &err) == 0,
	    "%s", err.msg);
}

static void fixture_close(struct fixture *f)
{
	core_close(f->core);
	fake_world_free(f->w);
}

static char *create(struct fixture *f)
{
	struct core_session_spec spec = {0};
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_session_create(f->core, &f->key, &spec, &info, &err) == 0, "%s", err.msg);
	char *id = strdup(info.id);
	core_session_info_release(&info);
	return id;
}

static void write_f(struct fixture *f, const char *id, const char *text)
{
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_file_write(f->core, &f->key, id, "f", text, strlen(text), &err) == 0, "%s",
		  err.msg);
}

static void expect_f(struct fixture *f, const char *id, const char *want)
{
	char *data = NULL;
	size_t len;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_file_read(f->core, &f->key, id, "f", &data, &len, &err) == 0, "%s", err.msg);
	CHECK_STR_EQ(data, want);
	free(data);
}

static enum core_state state_of(struct fixture *f, const char *id)
{
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_session_get(f->core, &f->key, id, &info, &err) == 0, "%s", err.msg);
	enum core_state st = info.state;
	core_session_info_release(&info);
	return st;
}

/* Puts id to deep sleep now, as the reaper would; err receives why not. */
static int deep_sleep_try(struct fixture *f, const char *id, struct bk_err *err)
{
	struct session *s;
	CHECK_MSG(core__session_acquire(f->core, f->key.id, id, &s, err) == 0, "%s", err->msg);
	pthread_rwlock_wrlock(&s->rw);
	int rc = core__lifecycle_deep_sleep_locked(f->core, s, err);
	pthread_rwlock_unlock(&s->rw);
	core__session_release(f->core, s);
	return rc;
}

static void deep_sleep(struct fixture *f, const char *id)
{
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(deep_sleep_try(f, id, &err) == 0, "%s", err.msg);
}

/* The in-memory last activity of id (0 when the registry does not hold
 * it). */
static int64_t last_active(struct fixture *f, const char *id)
{
	int64_t at = 0;
	pthread_mutex_lock(&f->core->lock);
	for (struct session *s = f->core->sessions; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			at = __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&f->core->lock);
	return at;
}

static bool wait_for(bool (*cond)(void *), void *ctx, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (cond(ctx))
			return true;
		usleep(10000);
	}
	return cond(ctx);
}

static bool pool_started(void *w)
{
	return fake_running(w) >= 1 && fake_calls(w, "start") >= 1;
}

TEST(create_adopts_a_warm_sandbox_and_the_pool_refills)
{
	struct fixture f;
	struct core_config cfg = config(1, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	CHECK(wait_for(pool_started, f.w, 5000));
	char *id = create(&f);
	CHECK_INT_EQ(fake_calls(f.w, "adopt"), 1);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.record && v.disk);
	CHECK_INT_EQ(v.running, 1);
	/* A replacement is started in the background. */
	CHECK(wait_for(pool_started, f.w, 5000));
	for (int i = 0; i < 500 && fake_running(f.w) < 2; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_running(f.w), 2);
	free(id);
	fixture_close(&f);
}

/* A lazily created session (InstaVM's) holds nothing; its first use
 * spawns its VM from the warm pool, as a create would, not by a fresh
 * start (which costs a cgroup v1 host tens of milliseconds). */
TEST(lazy_spawn_adopts_a_warm_sandbox)
{
	struct fixture f;
	struct core_config cfg = config(1, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	CHECK(wait_for(pool_started, f.w, 5000));
	struct core_session_spec spec = {.dialect = CORE_DIALECT_INSTAVM, .lazy = true};
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_session_create(f.core, &f.key, &spec, &info, &err) == 0, "%s", err.msg);
	char *id = strdup(info.id);
	core_session_info_release(&info);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.record && !v.disk);
	CHECK_INT_EQ(fake_calls(f.w, "adopt"), 0);
	int starts = fake_calls(f.w, "start");
	CHECK_MSG(core_vm_ensure(f.core, &f.key, id, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(fake_calls(f.w, "adopt"), 1);
	fake_view(f.w, id, &v);
	CHECK(v.disk);
	CHECK_INT_EQ(v.running, 1);
	/* No start for the session itself (the pool may refill meanwhile). */
	CHECK(fake_calls(f.w, "start") <= starts + 1);
	write_f(&f, id, "kept");
	expect_f(&f, id, "kept");
	free(id);
	fixture_close(&f);
}

TEST(create_falls_back_to_a_fresh_start_when_adoption_fails)
{
	struct fixture f;
	struct core_config cfg = config(1, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	CHECK(wait_for(pool_started, f.w, 5000));
	int starts = fake_calls(f.w, "start");
	fake_fail(f.w, "adopt", 1);
	char *id = create(&f);
	/* The pool's sandbox is gone, a new one runs for the session. */
	CHECK(fake_calls(f.w, "start") > starts);
	CHECK(fake_calls(f.w, "purge") >= 1);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.record && v.disk);
	CHECK_INT_EQ(v.running, 1);
	free(id);
	fixture_close(&f);
}

TEST(create_that_cannot_start_leaves_nothing)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	fake_fail(f.w, "start", 1);
	struct core_session_spec spec = {0};
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(core_session_create(f.core, &f.key, &spec, &info, &err), -1);
	CHECK_MSG(strstr(err.msg, "start failed") != NULL, "%s", err.msg);
	CHECK_INT_EQ(core_session_total(f.core), 0);
	CHECK_INT_EQ(fake_running(f.w), 0);
	/* The store had the record for a moment, and has it no more. */
	struct core_session_info *list;
	size_t n;
	int64_t total;
	CHECK(core_session_list(f.core, &f.key, NULL, false, 10, 0, &list, &n, &total, &err) == 0);
	CHECK_INT_EQ(total, 0);
	free(list);
	/* A failed record write leaves nothing either. */
	fake_fail(f.w, "session_insert", 1);
	CHECK_INT_EQ(core_session_create(f.core, &f.key, &spec, &info, &err), -1);
	CHECK_INT_EQ(fake_calls(f.w, "start"), 1);
	char *id = create(&f);
	free(id);
	CHECK_INT_EQ(core_session_total(f.core), 1);
	fixture_close(&f);
}

/* A delete whose record the store refuses (unreachable) does nothing
 * else: the session keeps its record and its running sandbox, serves as
 * before, and deletes once the store takes it. */
TEST(delete_the_store_refuses_keeps_the_session_whole)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	char *id = create(&f);
	write_f(&f, id, "kept");
	fake_fail(f.w, "session_delete", 1);
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(core_session_delete(f.core, &f.key, id, &err), -1);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.record);
	CHECK_INT_EQ(v.running, 1);
	expect_f(&f, id, "kept");
	err = (struct bk_err)BK_ERR_INIT;
	CHECK_MSG(core_session_delete(f.core, &f.key, id, &err) == 0, "%s", err.msg);
	fake_view(f.w, id, &v);
	CHECK(!v.record);
	CHECK_INT_EQ(v.running, 0);
	free(id);
	fixture_close(&f);
}

static bool no_record(void *ctx)
{
	struct fake_world **w = ctx;
	struct fake_view v;
	fake_view(w[0], (const char *)w[1], &v);
	return !v.record;
}

/* A create that cannot start, whose record the store then refuses to
 * delete: its sandbox goes at once, no request finds the session, and the
 * reaper deletes the record once the store takes it. */
TEST(create_undone_while_the_store_refuses_leaves_nothing)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	fake_fail(f.w, "start", 1);
	fake_fail(f.w, "session_delete", 1);
	struct core_session_spec spec = {0};
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(core_session_create(f.core, &f.key, &spec, &info, &err), -1);
	CHECK_INT_EQ(fake_running(f.w), 0);
	struct core_session_info *list;
	size_t n;
	int64_t total;
	CHECK(core_session_list(f.core, &f.key, NULL, false, 10, 0, &list, &n, &total, &err) == 0);
	CHECK_INT_EQ(total, n);
	char id[64] = "";
	if (n == 1)
		snprintf(id, sizeof(id), "%s", list[0].id);
	for (size_t i = 0; i < n; i++)
		core_session_info_release(&list[i]);
	free(list);
	if (id[0]) {
		/* Its record still there: refused all the same, never woken. */
		err = (struct bk_err)BK_ERR_INIT;
		CHECK_INT_EQ(core_vm_ensure(f.core, &f.key, id, &err), -1);
		CHECK_INT_EQ(err.kind, BK_E_NOT_FOUND);
		CHECK_INT_EQ(fake_running(f.w), 0);
		void *ctx[2] = {f.w, id};
		CHECK_MSG(wait_for(no_record, ctx, 10000), "the record of %s stays", id);
	}
	CHECK_INT_EQ(fake_calls(f.w, "session_delete"), 2);
	CHECK_INT_EQ(core_session_total(f.core), 0);
	fixture_close(&f);
}

TEST(create_stops_at_the_plan_cap)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	memset(&f, 0, sizeof(f));
	core_over(&f, fake_world_new(NULL), &cfg);
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK(plan_overrides_set(&ov, "max_sessions", "2", &err) == 0);
	CHECK(core_key_create(f.core, "free", &ov, f.secret, sizeof(f.secret), &f.key, &err) == 0);
	char *a = create(&f), *b = create(&f);
	struct core_session_spec spec = {0};
	struct core_session_info info;
	CHECK_INT_EQ(core_session_create(f.core, &f.key, &spec, &info, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_LIMIT);
	CHECK_INT_EQ(fake_running(f.w), 2);
	CHECK(core_session_delete(f.core, &f.key, a, &err) == 0);
	free(create(&f));
	free(a);
	free(b);
	fixture_close(&f);
}

struct state_wait {
	struct fixture *f;
	const char *id;
	enum core_state want;
};

static bool reached(void *arg)
{
	struct state_wait *s = arg;
	return state_of(s->f, s->id) == s->want;
}

TEST_TIMEOUT(idle_and_deep_sleep_come_when_due_and_wake_keeps_files, 60)
{
	struct fixture f;
	struct core_config cfg = config(0, 1, 3);
	fixture_open(&f, NULL, &cfg, "paid");
	char *id = create(&f);
	write_f(&f, id, "hello");
	double t0 = (double)now_ms();
	/* Reading info does not count as activity. */
	struct state_wait idle = {&f, id, CORE_STATE_IDLE};
	CHECK(wait_for(reached, &idle, 5000));
	double idle_after = ((double)now_ms() - t0) / 1000;
	CHECK_MSG(idle_after >= 0.9, "idle after %.2f s", idle_after);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.frozen && v.running == 1);
	struct state_wait deep = {&f, id, CORE_STATE_DEEP_SLEEP};
	CHECK(wait_for(reached, &deep, 8000));
	double deep_after = ((double)now_ms() - t0) / 1000;
	CHECK_MSG(deep_after >= 2.9, "deep sleep after %.2f s", deep_after);
	fake_view(f.w, id, &v);
	CHECK(v.snapshot && !v.disk);
	CHECK_INT_EQ(v.running, 0);
	/* Asleep, the session is not held in memory. */
	for (int i = 0; i < 100; i++) {
		pthread_mutex_lock(&f.core->lock);
		bool held = f.core->sessions != NULL;
		pthread_mutex_unlock(&f.core->lock);
		if (!held)
			break;
		usleep(10000);
	}
	pthread_mutex_lock(&f.core->lock);
	CHECK(f.core->sessions == NULL);
	pthread_mutex_unlock(&f.core->lock);
	/* A request wakes it, its files back. */
	expect_f(&f, id, "hello");
	CHECK_INT_EQ(state_of(&f, id), CORE_STATE_ACTIVE);
	fake_view(f.w, id, &v);
	CHECK(v.disk && !v.snapshot && v.running == 1);
	free(id);
	fixture_close(&f);
}

TEST(an_expired_session_asleep_is_removed)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	cfg.min_ttl_s = 1;
	fixture_open(&f, NULL, &cfg, "paid");
	struct core_session_spec spec = {.ttl_s = 1};
	struct core_session_info info;
	struct bk_err err = BK_ERR_INIT;
	CHECK(core_session_create(f.core, &f.key, &spec, &info, &err) == 0);
	char id[32];
	snprintf(id, sizeof(id), "%s", info.id);
	core_session_info_release(&info);
	write_f(&f, id, "x");
	deep_sleep(&f, id);
	struct fake_view v;
	for (int i = 0; i < 300; i++) {
		fake_view(f.w, id, &v);
		if (!v.record && !v.snapshot)
			break;
		usleep(10000);
	}
	CHECK(!v.record && !v.snapshot && !v.disk);
	fixture_close(&f);
}

/* A deep sleep whose save fails leaves the session exactly as it was:
 * awake, its processes alive and thawed, its files on its disk, and the
 * failure counts as activity. A save that succeeds found the processes
 * frozen, not ended, and ends them after. */
TEST_TIMEOUT(deep_sleep_that_cannot_save_leaves_the_session_running, 30)
{
	struct fixture f;
	struct core_config cfg = config(0, 1, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	char *id = create(&f);
	write_f(&f, id, "hello");
	/* From idle (frozen) and from active alike. */
	struct state_wait idle = {&f, id, CORE_STATE_IDLE};
	CHECK(wait_for(reached, &idle, 5000));
	__atomic_store_n(&f.core->cfg.idle_after_s, 300, __ATOMIC_RELAXED);
	for (int round = 0; round < 2; round++) {
		int64_t before = now_ms();
		fake_fail(f.w, "files_save", 1);
		struct bk_err err = BK_ERR_INIT;
		CHECK(deep_sleep_try(&f, id, &err) < 0);
		CHECK_MSG(strstr(err.msg, "stays awake") && strstr(err.msg, "files_save failed"),
			  "%s", err.msg);
		struct fake_view v;
		fake_view(f.w, id, &v);
		CHECK_MSG(v.running == 1 && !v.frozen && v.disk && !v.snapshot,
			  "round %d: running %d frozen %d disk %d snapshot %d", round, v.running,
			  v.frozen, v.disk, v.snapshot);
		CHECK_INT_EQ(v.state, STORE_SESSION_ACTIVE);
		CHECK_INT_EQ(state_of(&f, id), CORE_STATE_ACTIVE);
		CHECK_INT_EQ(fake_calls(f.w, "stop"), 0);
		CHECK(last_active(&f, id) >= before);
		expect_f(&f, id, "hello");
	}
	/* A thaw that fails too leaves it idle, which the next request thaws. */
	fake_fail(f.w, "freeze", 2);
	struct bk_err err = BK_ERR_INIT;
	CHECK(deep_sleep_try(&f, id, &err) < 0);
	CHECK_INT_EQ(state_of(&f, id), CORE_STATE_IDLE);
	expect_f(&f, id, "hello");
	CHECK_INT_EQ(state_of(&f, id), CORE_STATE_ACTIVE);
	/* And then it sleeps, saved while frozen, ended after. */
	deep_sleep(&f, id);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.saved_frozen);
	CHECK(v.snapshot && !v.disk && v.running == 0);
	CHECK_INT_EQ(fake_calls(f.w, "stop"), 1);
	expect_f(&f, id, "hello");
	free(id);
	fixture_close(&f);
}

/* A wake that cannot start a sandbox (the host at its capacity) leaves the
 * session asleep on its snapshot and holds no disk meanwhile. */
TEST(a_wake_that_cannot_start_stays_asleep_without_a_disk)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	fixture_open(&f, NULL, &cfg, "paid");
	char *id = create(&f);
	write_f(&f, id, "hello");
	deep_sleep(&f, id);
	fake_fail(f.w, "start", 1);
	char *data = NULL;
	size_t len;
	struct bk_err err = BK_ERR_INIT;
	CHECK(core_file_read(f.core, &f.key, id, "f", &data, &len, &err) < 0);
	CHECK_MSG(strstr(err.msg, "cannot wake") != NULL, "%s", err.msg);
	struct fake_view v;
	fake_view(f.w, id, &v);
	CHECK(v.snapshot && !v.disk && v.running == 0);
	CHECK_INT_EQ(v.state, STORE_SESSION_DEEP_SLEEP);
	expect_f(&f, id, "hello");
	free(id);
	fixture_close(&f);
}

/* ---- the crash-recovery matrix ---- */

enum transition { T_CREATE, T_IDLE, T_WAKE_IDLE, T_DEEP_SLEEP, T_WAKE_DEEP, T_DELETE };

static const char *const transition_names[] = {"create",     "idle",	       "wake from idle",
					       "deep sleep", "wake from deep", "delete"};

/* In a child: a new world at path with a key and, but for a create, one
 * session whose file "f" holds "hello", brought to the state transition t
 * starts from; the session's id and the key's secret go to side. Then the
 * child crashes at step k of the transition (counted from its start), or
 * exits 0 when the transition ends first. */
static _Noreturn void run_transition(enum transition t, const char *path, const char *side, int k)
{
	struct fixture f;
	struct core_config cfg = config(0, 300, 1800);
	fixture_open(&f, path, &cfg, "paid");
	char *id = t == T_CREATE ? strdup("") : create(&f);
	if (t != T_CREATE)
		write_f(&f, id, "hello");
	if (t == T_WAKE_IDLE) {
		__atomic_store_n(&f.core->cfg.idle_after_s, 1, __ATOMIC_RELAXED);
		struct state_wait idle = {&f, id, CORE_STATE_IDLE};
		CHECK(wait_for(reached, &idle, 5000));
		__atomic_store_n(&f.core->cfg.idle_after_s, 300, __ATOMIC_RELAXED);
	} else if (t == T_WAKE_DEEP) {
		deep_sleep(&f, id);
	}
	FILE *out = fopen(side, "w");
	CHECK(out && fprintf(out, "%s\n%s\n", id, f.secret) > 0 && fclose(out) == 0);
	fake_crash_at(f.w, k);
	struct bk_err err = BK_ERR_INIT;
	switch (t) {
	case T_CREATE:
		free(create(&f));
		break;
	case T_IDLE: {
		__atomic_store_n(&f.core->cfg.idle_after_s, 1, __ATOMIC_RELAXED);
		struct state_wait idle = {&f, id, CORE_STATE_IDLE};
		CHECK(wait_for(reached, &idle, 5000));
		break;
	}
	case T_WAKE_IDLE:
	case T_WAKE_DEEP:
		expect_f(&f, id, "hello");
		break;
	case T_DEEP_SLEEP:
		deep_sleep(&f, id);
		break;
	case T_DELETE:
		CHECK_MSG(core_session_delete(f.core, &f.key, id, &err) == 0, "%s", err.msg);
		break;
	}
	fflush(NULL);
	_exit(0);
}

/* After a crash: what the next start makes of the world is consistent,
 * and no acknowledged file is lost. */
static void check_recovered(enum transition t, const char *path, const char *id, const char *secret,
			    int k)
{
	struct fixture f = {0};
	struct core_config cfg = config(0, 300, 1800);
	core_over(&f, fake_world_load(path), &cfg);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_auth(f.core, secret, &f.key, &err) == 0, "%s", err.msg);
	const char *name = transition_names[t];
	if (t == T_CREATE) {
		/* Either no session at all, or one that works. */
		struct core_session_info *list;
		size_t n;
		int64_t total;
		CHECK(core_session_list(f.core, &f.key, NULL, false, 10, 0, &list, &n, &total,
					&err) == 0);
		CHECK_MSG(total <= 1, "%s crashed at step %d: %lld sessions", name, k,
			  (long long)total);
		if (n == 1) {
			write_f(&f, list[0].id, "later");
			expect_f(&f, list[0].id, "later");
		}
		for (size_t i = 0; i < n; i++)
			core_session_info_release(&list[i]);
		free(list);
		CHECK_INT_EQ(fake_running(f.w), (int)total);
		fixture_close(&f);
		return;
	}
	struct fake_view v;
	fake_view(f.w, id, &v);
	if (t == T_DELETE && !v.record) {
		/* Deleted: nothing of it may be left. */
		CHECK_MSG(!v.disk && !v.snapshot && v.running == 0,
			  "delete crashed at step %d left disk %d snapshot %d", k, v.disk,
			  v.snapshot);
		fixture_close(&f);
		return;
	}
	CHECK_MSG(v.record, "%s crashed at step %d lost the session", name, k);
	/* Recorded asleep means saved, and awake means on a disk. */
	if (v.state == STORE_SESSION_DEEP_SLEEP)
		CHECK_MSG(v.snapshot && !v.disk,
			  "%s crashed at step %d: asleep, snapshot %d disk %d", name, k, v.snapshot,
			  v.disk);
	else
		CHECK_MSG(v.disk && !v.snapshot,
			  "%s crashed at step %d: awake, snapshot %d disk %d", name, k, v.snapshot,
			  v.disk);
	CHECK_MSG(v.have_file && strcmp(v.file, "hello") == 0,
		  "%s crashed at step %d: the file is '%s' (found %d)", name, k, v.file,
		  v.have_file);
	/* And the session works: its file is read back through a request. */
	expect_f(&f, id, "hello");
	fake_view(f.w, id, &v);
	CHECK(v.disk && !v.snapshot && v.running == 1);
	fixture_close(&f);
}

static void matrix(enum transition t)
{
	char path[300], side[300], id[32] = "", secret[128] = "";
	int crashes = 0;
	for (int k = 1; k < 100; k++) {
		snprintf(path, sizeof(path), "%s/%d-%d.json", base_dir, (int)t, k);
		snprintf(side, sizeof(side), "%s/%d-%d.side", base_dir, (int)t, k);
		fflush(NULL);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			run_transition(t, path, side, k);
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK_MSG(WIFEXITED(status), "%s at step %d: killed by signal %d",
			  transition_names[t], k, WTERMSIG(status));
		if (WEXITSTATUS(status) == 0)
			break; /* done before step k: every step was crashed */
		CHECK_MSG(WEXITSTATUS(status) == FAKE_CRASH_EXIT, "%s at step %d: exit %d",
			  transition_names[t], k, WEXITSTATUS(status));
		FILE *in = fopen(side, "r");
		CHECK(in != NULL);
		CHECK(fgets(id, sizeof(id), in) && fgets(secret, sizeof(secret), in));
		fclose(in);
		id[strcspn(id, "\n")] = '\0';
		secret[strcspn(secret, "\n")] = '\0';
		crashes++;
		check_recovered(t, path, id, secret, k);
	}
	CHECK_MSG(crashes >= 1, "%s has no step to crash at", transition_names[t]);
	printf("    %s: crashed at each of its %d steps, recovered every time\n",
	       transition_names[t], crashes);
}

TEST(crash_recovery_create)
{
	matrix(T_CREATE);
}

TEST(crash_recovery_idle)
{
	matrix(T_IDLE);
}

TEST(crash_recovery_wake_from_idle)
{
	matrix(T_WAKE_IDLE);
}

TEST(crash_recovery_deep_sleep)
{
	matrix(T_DEEP_SLEEP);
}

TEST(crash_recovery_wake_from_deep_sleep)
{
	matrix(T_WAKE_DEEP);
}

TEST(crash_recovery_delete)
{
	matrix(T_DELETE);
}
