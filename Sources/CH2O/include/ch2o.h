#ifndef CH2O_H
#define CH2O_H
#include <stddef.h>
#include <stdint.h>
const char *ch2o_jemalloc_version(void);
#endif
