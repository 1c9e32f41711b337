/* Fakes for core/'s unit tests: an in-memory store and a sandbox backend
 * that runs nothing, both views of one "world" (what a host's database and
 * disks would hold), after redis testing its event loop without a network.
 *
 * The world counts the steps that change what would survive a crash (a
 * record written, a sandbox started or stopped, files saved, restored or
 * dropped) and can be told to fail one step, or to crash at one: it is
 * saved to a file after every step, and at the crash step the process
 * _exits before the step happens, leaving that file as a crashed host
 * would leave its disk. A new world loaded from the file is what the next
 * start finds (sandboxes gone, records and files kept).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/sandbox.h"
#include "store/store.h"

/* The exit code of a process that crashed on purpose. */
#define FAKE_CRASH_EXIT 42

struct fake_world;

/* A new, empty world; path (may be NULL) is where it is saved after each
 * step. */
struct fake_world *fake_world_new(const char *path);
/* The world saved at path (sandboxes are gone: nothing survives a crash
 * but records and files). */
struct fake_world *fake_world_load(const char *path);
void fake_world_free(struct fake_world *w);

/* Views of the world; close them through their ops, which leaves the
 * world alone. */
struct store *fake_store_new(struct fake_world *w);
struct sbx_backend *fake_backend_new(struct fake_world *w);

/* Steps counted so far, and the names of the last ones. */
int fake_steps(struct fake_world *w);
/* The next step whose count reaches n (counted from now) crashes the
 * process before it happens; 0: none. */
void fake_crash_at(struct fake_world *w, int n);
/* The next count calls of the operation called op ("start", "adopt",
 * "files_save", "session_insert", ...) fail with BK_E_INTERNAL (up to four
 * operations at once, each with its own count). files_save also fails
 * when the sandbox it saves runs unfrozen. */
void fake_fail(struct fake_world *w, const char *op, int count);
/* How often op was called. */
int fake_calls(struct fake_world *w, const char *op);

/* What the world holds of session id. */
struct fake_view {
	bool record;	   /* the store has it */
	int state;	   /* its recorded state */
	bool disk;	   /* its files are on a disk */
	bool snapshot;	   /* its files are saved */
	int running;	   /* sandboxes that run for it */
	bool frozen;	   /* its sandbox is frozen */
	bool saved_frozen; /* its last save found its sandbox frozen, not ended */
	char file[256];	   /* the content of its file "f" (disk first, else snapshot) */
	bool have_file;	   /* "f" was found */
	int64_t files_n;   /* files on its disk, or in its snapshot */
};
void fake_view(struct fake_world *w, const char *id, struct fake_view *out);
/* Sandboxes running, of every id. */
int fake_running(struct fake_world *w);
