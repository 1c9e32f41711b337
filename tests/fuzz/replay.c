/* The replay of a fuzz target (tests/fuzz/<name>.c) in `make tests`: one
 * test that runs every input of tests/fuzz/corpus/<name>/ through its
 * LLVMFuzzerTestOneInput once, under the build's ASan and UBSan, then
 * checks for leaks. So a target that no longer builds, or an input that
 * once crashed and crashes again, fails the run, without libFuzzer.
 *
 * The corpus is found relative to the current directory (scripts/test.sh
 * runs from the repository's root), else to the binary's, else at argv's
 * FUZZ_CORPUS; an empty or missing corpus fails: a target without seeds is
 * a test that checks nothing. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"

#ifndef FUZZ_NAME
#error "FUZZ_NAME names the target"
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define REPLAY_TEST(name) TEST_TIMEOUT(name, 600)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* The sanitizers' (weak: a build without them has neither). */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static char current[PATH_MAX];

/* A sanitizer's report ends the process: it names the input first. */
static void say_input(void)
{
	fprintf(stderr, "    while replaying '%s'\n", current);
}

static int corpus_dir(char *out, size_t len)
{
	const char *env = getenv("FUZZ_CORPUS");
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return 0;
	}
	snprintf(out, len, "tests/fuzz/corpus/%s", STR(FUZZ_NAME));
	if (access(out, R_OK) == 0)
		return 0;
	/* build/<kind>/tests/fuzz_<name>: the repository is three up. */
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	for (int up = 0; up < 4; up++) {
		char *slash = strrchr(exe, '/');
		if (slash == NULL)
			return -1;
		*slash = '\0';
	}
	snprintf(out, len, "%s/tests/fuzz/corpus/%s", exe, STR(FUZZ_NAME));
	return access(out, R_OK) == 0 ? 0 : -1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

REPLAY_TEST(CAT(replay_, FUZZ_NAME))
{
	char dir[PATH_MAX - 256];
	CHECK_MSG(corpus_dir(dir, sizeof(dir)) == 0, "no corpus tests/fuzz/corpus/%s",
		  STR(FUZZ_NAME));
	if (LLVMFuzzerInitialize) {
		int argc = 0;
		char **argv = NULL;
		LLVMFuzzerInitialize(&argc, &argv);
	}
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(say_input);
	struct dirent **names;
	int n = scandir(dir, &names, NULL, by_name);
	CHECK_MSG(n >= 0, "cannot read '%s': %s", dir, strerror(errno));
	int inputs = 0;
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] == '.') {
			free(names[i]);
			continue;
		}
		snprintf(current, sizeof(current), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		FILE *f = fopen(current, "rb");
		CHECK_MSG(f != NULL, "cannot open '%s': %s", current, strerror(errno));
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		fseek(f, 0, SEEK_SET);
		/* An exact allocation, so that ASan sees a read past the input. */
		uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
		CHECK(data != NULL);
		CHECK(size == 0 || fread(data, 1, (size_t)size, f) == (size_t)size);
		fclose(f);
		LLVMFuzzerTestOneInput(data, (size_t)size);
		free(data);
		inputs++;
	}
	free(names);
	CHECK_MSG(inputs > 0, "corpus '%s' is empty", dir);
	snprintf(current, sizeof(current), "%s (the leak check after every input)", dir);
	CHECK_MSG(!__lsan_do_recoverable_leak_check || __lsan_do_recoverable_leak_check() == 0,
		  "memory leaked replaying '%s'", dir);
	printf("    %d inputs of %s\n", inputs, dir);
}
