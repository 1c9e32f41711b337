/* A small test harness: every TEST runs in its own forked process with a
 * time limit, so one crash or hang fails that test alone.
 *
 * A test passes by returning, fails through CHECK*() (which print the file,
 * line and expression and end the process), and says SKIP (with the reason)
 * when this machine cannot run it. Each binary prints one line per test and
 * a closing "N passed, N failed, N skipped" that scripts/test.sh adds up.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void (*harness_fn)(void);

void harness_register(const char *name, harness_fn fn, int timeout_s);
_Noreturn void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void harness_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Optional: a binary may define these to set up shared state (a running
 * bunkerd, say) in the parent before any test and tear it down after all.
 * harness_setup returns 0, or non-zero to fail every test. */
int harness_setup(void) __attribute__((weak));
void harness_teardown(void) __attribute__((weak));
/* After teardown: a non-zero return counts as one more failed check. */
int harness_final_check(void) __attribute__((weak));

#define TEST_TIMEOUT(name, secs)                                                                   \
	static void name(void);                                                                    \
	__attribute__((constructor)) static void harness_reg_##name(void)                          \
	{                                                                                          \
		harness_register(#name, name, secs);                                               \
	}                                                                                          \
	static void name(void)

#define TEST(name) TEST_TIMEOUT(name, 60)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			harness_fail(__FILE__, __LINE__, "%s", #cond);                             \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			harness_fail(__FILE__, __LINE__, __VA_ARGS__);                             \
	} while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b)                                                                      \
			harness_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, _a,     \
				     _b);                                                          \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0)                               \
			harness_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,     \
				     _a ? _a : "(null)", _b ? _b : "(null)");                      \
	} while (0)

#define SKIP(...) harness_skip(__VA_ARGS__)
