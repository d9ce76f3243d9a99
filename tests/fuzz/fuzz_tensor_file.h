/* The tensor-file harness (tests/fuzz/fuzz_tensor_file.c), shared by its
 * libFuzzer target and the replay test. */
#ifndef PRESCORE_FUZZ_TENSOR_FILE_H
#define PRESCORE_FUZZ_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Writes one input as a tensor file, opens and reads it. Aborts when a
 * property fails. @return 1 when the file was accepted, 0 otherwise. */
int ps_fuzz_tensor_file_one(const uint8_t *data, size_t size);

#endif
