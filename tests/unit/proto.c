/* agent/proto: framing and field encoding. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../harness.h"
#include "agent/proto.h"

TEST(proto_roundtrip_fields)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC, 42);
	CHECK(agent_msg_put_str(&m, AGENT_T_ARGV, "/bin/sh") == 0);
	CHECK(agent_msg_put_str(&m, AGENT_T_ARGV, "-c") == 0);
	CHECK(agent_msg_put_i64(&m, AGENT_T_TIMEOUT_MS, -7) == 0);
	CHECK(agent_msg_put(&m, AGENT_T_STDIN, "a\0b", 3) == 0);
	CHECK(agent_msg_send(sv[0], &m) == 0);
	agent_msg_release(&m);

	struct agent_msg r;
	CHECK_INT_EQ(agent_msg_recv(sv[1], &r), 1);
	CHECK_INT_EQ(r.type, AGENT_EXEC);
	CHECK_INT_EQ(r.req_id, 42);
	CHECK_INT_EQ(r.version, AGENT_PROTO_VERSION);
	CHECK_INT_EQ(agent_msg_get_i64(&r, AGENT_T_TIMEOUT_MS, 0), -7);
	CHECK_INT_EQ(agent_msg_get_i64(&r, AGENT_T_PID, 99), 99);
	size_t off = 0;
	struct agent_field f;
	int argc = 0;
	while (agent_msg_next(&r, &off, &f))
		if (f.tag == AGENT_T_ARGV)
			argc++;
	CHECK_INT_EQ(argc, 2);
	CHECK(agent_msg_find(&r, AGENT_T_STDIN, &f));
	CHECK_INT_EQ(f.len, 3);
	CHECK(memcmp(f.data, "a\0b", 3) == 0);
	agent_msg_release(&r);
	close(sv[0]);
	CHECK_INT_EQ(agent_msg_recv(sv[1], &r), 0); /* clean EOF */
}

TEST(proto_rejects_oversized_frame)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct agent_hdr h = {.len = AGENT_MAX_PAYLOAD + 1, .type = AGENT_EXEC};
	CHECK(write(sv[0], &h, sizeof(h)) == (ssize_t)sizeof(h));
	struct agent_msg r;
	errno = 0;
	CHECK_INT_EQ(agent_msg_recv(sv[1], &r), -1);
	CHECK_INT_EQ(errno, EPROTO);
}

TEST(proto_truncated_frame_is_an_error)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct agent_hdr h = {.len = 100, .type = AGENT_EXEC};
	CHECK(write(sv[0], &h, sizeof(h)) == (ssize_t)sizeof(h));
	CHECK(write(sv[0], "abc", 3) == 3);
	close(sv[0]);
	struct agent_msg r;
	CHECK_INT_EQ(agent_msg_recv(sv[1], &r), -1);
}

TEST(proto_malformed_field_stops_iteration)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC, 1);
	CHECK(agent_msg_put_str(&m, AGENT_T_CWD, "/workspace") == 0);
	/* A field whose length runs past the payload. */
	uint16_t tag = AGENT_T_ARGV;
	uint32_t len = 1000;
	CHECK(agent_msg_put(&m, 0, NULL, 0) == 0);
	memcpy(m.payload + m.len - 6, &tag, 2);
	memcpy(m.payload + m.len - 4, &len, 4);
	size_t off = 0;
	struct agent_field f;
	CHECK(agent_msg_next(&m, &off, &f));
	CHECK_INT_EQ(f.tag, AGENT_T_CWD);
	CHECK(!agent_msg_next(&m, &off, &f));
	agent_msg_release(&m);
}

TEST(proto_put_refuses_too_large)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_WRITE_FILE, 1);
	errno = 0;
	CHECK_INT_EQ(agent_msg_put(&m, AGENT_T_DATA, "", (size_t)AGENT_MAX_PAYLOAD + 1), -1);
	CHECK_INT_EQ(errno, EMSGSIZE);
	agent_msg_release(&m);
}
