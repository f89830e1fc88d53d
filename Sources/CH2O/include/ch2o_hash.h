#ifndef CH2O_HASH_H
#define CH2O_HASH_H
#include <stddef.h>
#include <stdint.h>

/** 64-bit xxHash (XXH3 64-bit variant) of `len` bytes at `data`, seeded with `seed`.
 *  `data` may be NULL when `len` is 0. Pure function, thread-safe. */
uint64_t ch2o_xxh64(const void *data, size_t len, uint64_t seed);

#endif
