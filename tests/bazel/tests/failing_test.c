/* Fails on purpose: the integration tests run it explicitly to check that a failing test
 * is reported FAILED (and its result is not cached as a success). */
#include <stdio.h>

int main(void)
{
    printf("failing_test: this test fails on purpose\n");
    return 1;
}
