/* Scalar arguments of the attention kernels, one struct per kernel family,
 * shared by the host (C99) and the kernels (OpenCL C 1.2) like philox.h:
 * lib/program.c prepends this file to every program, and the host stages
 * include it. The host fills a struct and passes it by value as one kernel
 * argument; buffers stay separate __global pointer arguments.
 *
 * Members are 32-bit only (ps_i32, ps_u32, float): no pointers, size_t,
 * bool, vectors or 64-bit values, whose size or alignment may differ
 * between the host compiler and the device's. With 4-byte members and no
 * padding, declaration order fixes the layout on both sides; the size
 * checks at the end fail the build of the library or of the program if a
 * member of another width, or padding, creeps in. Values are as the kernels
 * read them: counts and sizes as int, the scale in the log2 domain. */
#ifndef PS_ATTENTION_PARAMS_H
#define PS_ATTENTION_PARAMS_H

#ifndef __OPENCL_VERSION__
#include "philox.h" /* ps_i32, ps_u32 */
#endif

/* Exact attention, flash_attention_cpu / _gpu (cl/flash_attention.cl),
 * filled by lib/exact.c: once per call, the key range per launch. */
typedef struct ps_flash_params {
    ps_i32 n_q, n_k;  /* query rows, keys per head */
    ps_i32 n_k_pad;   /* CPU shape: row stride of the transposed keys */
    ps_i32 d, dv;     /* head dimensions of Q/K and of V/O */
    ps_i32 heads;     /* query heads */
    ps_i32 group;     /* query heads per KV head */
    ps_i32 causal;    /* bottom-right aligned causal mask */
    ps_i32 key_begin; /* keys [key_begin, key_stop) in this launch; key_begin > 0 */
    ps_i32 key_stop;  /* resumes from the O and LSE the previous launch wrote */
    float scale_log2; /* softmax scale times log2 e */
} ps_flash_params;
#define PS_FLASH_PARAMS_WORDS 11

/* The size checks (C99 has no static assert): a negative array size. */
typedef char ps_flash_params_size_check
    [sizeof(ps_flash_params) == 4 * PS_FLASH_PARAMS_WORDS ? 1 : -1];

#endif /* PS_ATTENTION_PARAMS_H */
