#include "lib/greet.h"

#include <stdio.h>

int greet_format(char *buf, size_t n, const char *who)
{
    return snprintf(buf, n, "hello, %s!", who && *who ? who : "world");
}
