#include "lib/greet.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    char buf[64];
    int n = greet_format(buf, sizeof buf, "bazel");
    if (n != 13 || strcmp(buf, "hello, bazel!") != 0) {
        printf("FAIL: greet_format gave %d \"%s\"\n", n, buf);
        return 1;
    }
    greet_format(buf, sizeof buf, "");
    if (strcmp(buf, "hello, world!") != 0) {
        printf("FAIL: empty name gave \"%s\"\n", buf);
        return 1;
    }
    printf("greet_test: ok\n");
    return 0;
}
