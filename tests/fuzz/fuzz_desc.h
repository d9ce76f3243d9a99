/* The fuzz harness's entry point (tests/fuzz/fuzz_desc.c), shared by the
 * libFuzzer target and the replay test. */
#ifndef PRESCORE_FUZZ_DESC_H
#define PRESCORE_FUZZ_DESC_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one input, validates it and, when valid and tiny, runs the host
 * reference on it. Aborts when a property fails. @return 1 when the
 * reference ran, 0 otherwise. */
int ps_fuzz_desc_one(const uint8_t *data, size_t size);

#endif
