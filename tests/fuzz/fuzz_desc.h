/* The fuzz harness's entry point (tests/fuzz/fuzz_desc.c), shared by the
 * libFuzzer target and the replay test. */
#ifndef PRESCORE_FUZZ_DESC_H
#define PRESCORE_FUZZ_DESC_H

#include <stddef.h>
#include <stdint.h>

#include "prescore/prescore.h"

/* Decodes one input, validates it and, when valid and tiny, runs the host
 * reference on it. Aborts when a property fails. @return 1 when the
 * reference ran, 0 otherwise. */
int ps_fuzz_desc_one(const uint8_t *data, size_t size);

/* The descriptor an input decodes to; @return bytes used (tensor bytes follow). */
size_t ps_fuzz_desc_decode(const uint8_t *data, size_t size, ps_attention_desc *desc);
/* 1 when a valid descriptor is small enough for the reference (n <= 64, ...). */
int ps_fuzz_desc_tiny(const ps_attention_desc *desc);

#endif
