#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512
#define SKIP_CODE 77

static struct {
	const char *name;
	harness_fn fn;
	int timeout_s;
} tests[MAX_TESTS];
static int n_tests;

void harness_register(const char *name, harness_fn fn, int timeout_s)
{
	if (n_tests == MAX_TESTS) {
		fprintf(stderr, "harness: too many tests\n");
		exit(2);
	}
	tests[n_tests].name = name;
	tests[n_tests].fn = fn;
	tests[n_tests].timeout_s = timeout_s;
	n_tests++;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "    %s:%d: check failed: ", file, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(NULL);
	_exit(1);
}

void harness_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "    skip: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(NULL);
	_exit(SKIP_CODE);
}

static int run_one(int i)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		tests[i].fn();
		fflush(NULL);
		_exit(0);
	}
	int status = 0;
	time_t deadline = time(NULL) + tests[i].timeout_s;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return 1;
		if (time(NULL) >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fprintf(stderr, "    timed out after %d s\n", tests[i].timeout_s);
			return 1;
		}
		usleep(2000);
	}
	/* Whatever the test left in its process group goes with it. */
	kill(-pid, SIGKILL);
	if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_CODE)
		return SKIP_CODE;
	if (WIFSIGNALED(status))
		fprintf(stderr, "    killed by signal %d\n", WTERMSIG(status));
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;
	const char *only = argc > 1 ? argv[1] : getenv("TEST_ONLY");
	setvbuf(stdout, NULL, _IOLBF, 0);
	int setup_rc = harness_setup ? harness_setup() : 0;
	for (int i = 0; i < n_tests; i++) {
		if (only && *only && strstr(tests[i].name, only) == NULL)
			continue;
		int r = setup_rc == 0 ? run_one(i) : 1;
		if (r == 0) {
			printf("PASS %s\n", tests[i].name);
			passed++;
		} else if (r == SKIP_CODE) {
			printf("SKIP %s\n", tests[i].name);
			skipped++;
		} else {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		}
	}
	if (harness_teardown)
		harness_teardown();
	if (harness_final_check && harness_final_check() != 0) {
		printf("FAIL final_check\n");
		failed++;
	}
	printf("%s: %d passed, %d failed, %d skipped\n", argv[0], passed, failed, skipped);
	return failed ? 1 : 0;
}
