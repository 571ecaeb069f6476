#include "lib/greet.h"

#include <stdio.h>

int main(void)
{
    /* Published FNV-1a 32-bit test vectors. */
    if (greet_checksum("") != 0x811c9dc5u || greet_checksum("a") != 0xe40c292cu ||
        greet_checksum("foobar") != 0xbf9cf968u) {
        printf("FAIL: greet_checksum does not match the FNV-1a vectors\n");
        return 1;
    }
    printf("checksum_test: ok\n");
    return 0;
}
