/* What bunker-init's files share. */
#pragma once

#include <stdint.h>

#include "agent/proto.h"

#define AGENT_FD 3

/* Sends m to the daemon; exits when the daemon is gone. */
void init_send(const struct agent_msg *m);
/* Answers req with a RESULT carrying errnum (0: success). */
void init_result(uint32_t req_id, int errnum, const char *stage, const char *message);

/* File operations inside the workspace, as the requesting user (files.c). */
void files_write(const struct agent_msg *req);
void files_read(const struct agent_msg *req);
void files_list(const struct agent_msg *req);
void files_delete(const struct agent_msg *req);
void files_stat(const struct agent_msg *req);
