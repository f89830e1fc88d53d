#include <jemalloc/jemalloc.h>
#include "ch2o.h"
const char *ch2o_jemalloc_version(void)
{
    const char *v = NULL;
    size_t sz = sizeof(v);
    if (mallctl("version", &v, &sz, NULL, 0) != 0)
        return NULL;
    return v;
}
