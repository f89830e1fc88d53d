#include <xxhash.h>
#include "ch2o_hash.h"

uint64_t ch2o_xxh64(const void *data, size_t len, uint64_t seed)
{
    static const char empty = 0;
    if (data == NULL)
        data = &empty;
    return (uint64_t)XXH3_64bits_withSeed(data, len, (XXH64_hash_t)seed);
}
