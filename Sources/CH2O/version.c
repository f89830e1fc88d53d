/*
 * The product version, the one thing in the build that changes with every commit. It lives in this file alone so
 * that a new version recompiles one C file and relinks, instead of reaching every module through a -D flag (a
 * define passed with -Xcc goes to every Swift module's clang importer too, so each commit rebuilt everything).
 * one_key_build.sh writes version.inc (gitignored) when the version changes; a bare `swift build` has none and
 * says "dev".
 */
#include "ch2o.h"

#if __has_include("version.inc")
#include "version.inc"
#endif
#ifndef MINDIE_MS_VERSION
#define MINDIE_MS_VERSION "dev"
#endif

const char *ch2o_product_version(void) { return MINDIE_MS_VERSION; }
