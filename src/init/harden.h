/* Privilege dropping for executions (see harden.c). */
#pragma once

#include <sys/types.h>

/* Builds and compiles the seccomp filters; once, at init's start, before
 * any execution is forked. Returns -1 when libseccomp fails. */
int harden_init(void);
/* Empties the capability bounding and ambient sets of the caller. */
int harden_drop_caps_bounding(void);
/* Drops every capability and becomes uid:gid with no_new_privs. On failure
 * *stage names the step. */
int harden_become_user(uid_t uid, gid_t gid, const char **stage);
/* Loads the filters compiled by harden_init() into the caller: the last
 * step before execve. Needs no_new_privs (harden_become_user() sets it);
 * only system calls, so a forked child may call it. Returns -1 with errno
 * set on failure. */
int harden_seccomp_load(void);
