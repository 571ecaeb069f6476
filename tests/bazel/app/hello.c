/* hello: prints a greeting and its checksum; the genrules run it as a build tool. */
#include "lib/greet.h"

#include <inttypes.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    char line[128];
    greet_format(line, sizeof line, argc > 1 ? argv[1] : "cairn");
    printf("%s checksum=%08" PRIx32 "\n", line, greet_checksum(line));
    return 0;
}
