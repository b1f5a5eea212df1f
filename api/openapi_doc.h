/*
 * openapi.yaml, embedded into the binary at build time (CMake runs
 * api/embed_file.cmake), so GET /openapi.yaml needs no file at run time.
 */
#ifndef KL_API_OPENAPI_DOC_H
#define KL_API_OPENAPI_DOC_H

#include <stddef.h>

/* The file's bytes followed by a NUL; `kl_openapi_yaml_len` excludes the NUL. */
extern const unsigned char kl_openapi_yaml[];
extern const size_t kl_openapi_yaml_len;

#endif
