/* greet: a tiny library for cairn's Bazel test workspace. Its two source files give the
 * cache two independent compile actions. */
#ifndef GREET_H
#define GREET_H

#include <stddef.h>
#include <stdint.h>

/* Writes "hello, WHO!" into buf (at most n bytes, NUL-terminated); returns the length it
 * needed, like snprintf. */
int greet_format(char *buf, size_t n, const char *who);

/* 32-bit FNV-1a hash of s. */
uint32_t greet_checksum(const char *s);

#endif
