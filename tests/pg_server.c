/* The throwaway PostgreSQL of the tests (tests/pg_server.h). */
#include "pg_server.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct pg_server pg = {.watchdog_pipe = -1};

/* Runs argv (a NULL-terminated list) as the postgres user, its output to
 * log; returns its exit status, or -1. */
static int run_as_postgres(const char *const *argv, const char *log)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		/* Its own directory, which the postgres user can read. */
		if (pg.dir[0] && chdir(pg.dir) < 0)
			_exit(126);
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull >= 0)
			dup2(devnull, 0);
		const char *full[32] = {"runuser", "-u", "postgres", "--"};
		int n = 4;
		for (int i = 0; argv[i] && n < 31; i++)
			full[n++] = argv[i];
		full[n] = NULL;
		execvp("runuser", (char *const *)full);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Stops the server at dir at once and removes dir: the watchdog's work. */
static void server_destroy(const char *dir)
{
	char data[128], log[128];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/pg_ctl.log", dir);
	struct stat sb;
	char pid_file[160];
	snprintf(pid_file, sizeof(pid_file), "%s/postmaster.pid", data);
	if (stat(pid_file, &sb) == 0) {
		const char *stop[] = {PG_SERVER_BIN "/pg_ctl",
				      "-D",
				      data,
				      "-m",
				      "immediate",
				      "-w",
				      "-s",
				      "stop",
				      NULL};
		run_as_postgres(stop, log);
	}
	pid_t pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--one-file-system", dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Forks the watchdog: it leaves the test's session, then waits for EOF on
 * the pipe (every writer gone: the test binary ended, however) and
 * destroys the server. */
static int watchdog_start(void)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[1]);
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		char c;
		while (read(fds[0], &c, 1) != 0 && errno == EINTR)
			;
		server_destroy(pg.dir);
		_exit(0);
	}
	close(fds[0]);
	pg.watchdog_pipe = fds[1];
	pg.watchdog_pid = pid;
	return 0;
}

/* A server that should have started and did not: the tests FAIL with why
 * (the end of log, which the watchdog removes with the directory). */
static void pg_server_failed(const char *what, const char *log)
{
	pg.broken = true;
	char tail[160] = "";
	FILE *f = fopen(log, "r");
	if (f) {
		char line[160];
		while (fgets(line, sizeof(line), f))
			snprintf(tail, sizeof(tail), "%s", line);
		fclose(f);
	}
	size_t n = strlen(tail);
	if (n > 0 && tail[n - 1] == '\n')
		tail[n - 1] = '\0';
	snprintf(pg.skip, sizeof(pg.skip), "%s: %s", what, tail);
}

/* pg_ctl start on pg.dir's data directory, waiting (at most 30 s) until
 * it takes connections: its exit status. */
static int server_start(const char *server_log)
{
	char data[128], log[128], opts[256];
	snprintf(data, sizeof(data), "%s/data", pg.dir);
	snprintf(log, sizeof(log), "%s/pg_ctl.log", pg.dir);
	/* Only the unix socket in our directory; no TCP at all. fsync off: a
	 * test server's data need not survive a power cut. */
	snprintf(opts, sizeof(opts),
		 "-c listen_addresses='' -c unix_socket_directories='%s' -c fsync=off "
		 "-c max_connections=50",
		 pg.dir);
	const char *start[] = {PG_SERVER_BIN "/pg_ctl",
			       "-D",
			       data,
			       "-l",
			       server_log,
			       "-o",
			       opts,
			       "-w",
			       "-t",
			       "30",
			       "-s",
			       "start",
			       NULL};
	return run_as_postgres(start, log);
}

int pg_server_start(void)
{
	struct passwd *pw = getpwnam("postgres");
	if (access(PG_SERVER_BIN "/initdb", X_OK) != 0 ||
	    access(PG_SERVER_BIN "/pg_ctl", X_OK) != 0) {
		snprintf(pg.skip, sizeof(pg.skip), "no PostgreSQL 15 binaries in %s",
			 PG_SERVER_BIN);
		return 0;
	}
	if (pw == NULL) {
		snprintf(pg.skip, sizeof(pg.skip), "no 'postgres' user to run PostgreSQL as");
		return 0;
	}
	if (geteuid() != 0) {
		snprintf(pg.skip, sizeof(pg.skip), "not root: cannot run PostgreSQL as 'postgres'");
		return 0;
	}
	/* The postgres user must be able to reach its directory: a /tmp of
	 * mode 0700 (a private one) would stop it at the door. */
	struct stat sb;
	if (stat("/tmp", &sb) < 0 || (sb.st_mode & S_IXOTH) == 0) {
		snprintf(pg.skip, sizeof(pg.skip),
			 "/tmp (mode %o) cannot be searched by the 'postgres' user",
			 (unsigned)(sb.st_mode & 07777));
		return 0;
	}
	snprintf(pg.dir, sizeof(pg.dir), "/tmp/bk-pg-XXXXXX");
	if (mkdtemp(pg.dir) == NULL || chown(pg.dir, pw->pw_uid, pw->pw_gid) < 0) {
		snprintf(pg.skip, sizeof(pg.skip), "cannot make a directory for PostgreSQL: %s",
			 strerror(errno));
		return -1;
	}
	if (watchdog_start() < 0) {
		snprintf(pg.skip, sizeof(pg.skip), "cannot start the watchdog: %s",
			 strerror(errno));
		rmdir(pg.dir);
		return -1;
	}
	char data[128], log[128], server_log[128];
	snprintf(data, sizeof(data), "%s/data", pg.dir);
	snprintf(log, sizeof(log), "%s/pg_ctl.log", pg.dir);
	/* The server's own log, which it opens as postgres. */
	snprintf(server_log, sizeof(server_log), "%s/server.log", pg.dir);
	const char *initdb[] = {PG_SERVER_BIN "/initdb",
				"-D",
				data,
				"-U",
				"bunker",
				"--auth=trust",
				"-E",
				"UTF8",
				"--no-sync",
				"--locale=C",
				NULL};
	if (run_as_postgres(initdb, log) != 0) {
		pg_server_failed("initdb failed", log);
		pg_server_stop();
		return -1;
	}
	if (server_start(server_log) != 0) {
		pg_server_failed("pg_ctl start failed", server_log);
		pg_server_stop();
		return -1;
	}
	pg.running = true;
	return 0;
}

void pg_server_stop(void)
{
	if (pg.watchdog_pipe < 0)
		return;
	close(pg.watchdog_pipe);
	pg.watchdog_pipe = -1;
	while (waitpid(pg.watchdog_pid, NULL, 0) < 0 && errno == EINTR)
		;
	pg.running = false;
}

int pg_server_database(const char *prefix, char *uri, size_t len, char *msg, size_t msg_len)
{
	static int counter;
	char name[64];
	snprintf(name, sizeof(name), "%s_%d_%d", prefix, (int)getpid(), ++counter);
	char admin[160];
	snprintf(admin, sizeof(admin), "postgres:///postgres?host=%s&user=bunker", pg.dir);
	PGconn *c = PQconnectdb(admin);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(msg, msg_len, "cannot connect to the test server: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	/* A name of ours (letters, digits, '_'), quoted by libpq all the same:
	 * CREATE DATABASE takes no parameter. */
	char *quoted = PQescapeIdentifier(c, name, strlen(name));
	char sql[160];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", quoted);
	PQfreemem(quoted);
	PGresult *r = PQexec(c, sql);
	int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc < 0)
		snprintf(msg, msg_len, "cannot create database %s: %s", name, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	snprintf(uri, len, "postgres:///%s?host=%s&user=bunker", name, pg.dir);
	return rc;
}

int pg_server_halt(const char *mode)
{
	char data[128], log[128];
	snprintf(data, sizeof(data), "%s/data", pg.dir);
	snprintf(log, sizeof(log), "%s/pg_ctl.log", pg.dir);
	const char *stop[] = {
	    PG_SERVER_BIN "/pg_ctl", "-D", data, "-m", mode, "-w", "-t", "30", "-s", "stop", NULL};
	return run_as_postgres(stop, log) == 0 ? 0 : -1;
}

int pg_server_resume(void)
{
	char server_log[128];
	snprintf(server_log, sizeof(server_log), "%s/server.log", pg.dir);
	return server_start(server_log) == 0 ? 0 : -1;
}
