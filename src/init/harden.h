/* Privilege dropping for executions (see harden.c). */
#pragma once

#include <sys/types.h>

/* Builds the seccomp filter; once, at init's start. */
int harden_init(void);
/* Empties the capability bounding and ambient sets of the caller. */
int harden_drop_caps_bounding(void);
/* Drops every capability and becomes uid:gid with no_new_privs. On failure
 * *stage names the step. */
int harden_become_user(uid_t uid, gid_t gid, const char **stage);
/* Loads the filter into the caller; the last step before execve. */
int harden_seccomp_load(void);
