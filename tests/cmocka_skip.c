/* Makes a cmocka program that skipped a case exit 77, which CTest counts as skipped (every test has
 * SKIP_RETURN_CODE 77), instead of 0, which it would count as passed.
 *
 * cmocka's skip() reports the case as skipped but the program still returns the number of failures,
 * so a case that could not run on a machine would look like a pass. Every cmocka program in tests/ is
 * linked with -Wl,--wrap=_skip -Wl,--wrap=_cmocka_run_group_tests (tests/CMakeLists.txt): the test
 * sources keep calling skip() and cmocka_run_group_tests() as cmocka documents them, and the linker
 * sends those calls here. What must stay true: a failure wins over a skip (the program exits 1, never
 * 77, when any case failed), and a program with no skipped case exits as cmocka says.
 *
 * A program run a second way where some of its cases cannot apply (unit_executor as an ordinary user:
 * no cgroups) names those cases in CAIRN_TEST_OMIT where the test is declared (a cmocka pattern, with
 * * and ?): they are not run, so they count neither as passed nor as skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>

#define CTEST_SKIPPED 77

void __real__skip(const char *const file, const int line);
int __real__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);
void __wrap__skip(const char *const file, const int line);
int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);

/* Cases run one after another on the main thread (cmocka longjmps out of a skipped one), so a plain
 * counter is enough. */
static int skipped;

void __wrap__skip(const char *const file, const int line)
{
	skipped++;
	__real__skip(file, line);
}

int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown)
{
	const char *omit = getenv("CAIRN_TEST_OMIT");
	if (omit && omit[0])
		cmocka_set_skip_filter(omit);
	int failed = __real__cmocka_run_group_tests(group_name, tests, num_tests, group_setup, group_teardown);
	if (failed != 0)
		return 1;
	return skipped > 0 ? CTEST_SKIPPED : 0;
}
