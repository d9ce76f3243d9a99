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

/* Exact attention, flash_attention_cpu / _gpu (cl/exact.cl),
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

/* HyperAttention, hyper_gather_keys, hyper_gather_samples, hyper_blocks_*
 * and hyper_residual_* (cl/hyper.cl), filled once per call by
 * lib/hyper.c; each kernel reads the members it needs. */
typedef struct ps_hyper_params {
    ps_i32 n_q, n_k;         /* query rows, keys per KV head (n_k_used) */
    ps_i32 n_k_pad;          /* row stride of the sorted keys and values */
    ps_i32 d, dv;            /* head dimensions of Q/K and of V/O */
    ps_i32 heads;            /* query heads */
    ps_i32 group;            /* query heads per KV head */
    ps_i32 s, s_pad;         /* residual samples per query head, padded to 16 */
    ps_i32 block;            /* keys per key block */
    ps_i32 qb;               /* rows of the longest query block (ps_hyper_query_block_max) */
    ps_i32 tiles;            /* per query block: work-items (CPU shape), groups (GPU) */
    ps_i32 transpose;        /* gathered K transposed (the CPU shape's layout) */
    ps_u32 seed_lo, seed_hi; /* seed of the residual samples, bits 0..31, 32..63 */
    float scale_log2;        /* softmax scale times log2 e */
    float log_weight;        /* ln of the residual weight n_k / s */
    ps_u32 keys_f16;         /* the key set, and so the sorted and sampled copies of */
    ps_u32 values_f16;       /* its keys and values, are fp16 (cl/tensor_view.h) */
    ps_u32 blocks_f16;       /* the block part's output is kept in O's storage type */
    ps_u32 key_bias;         /* keys carry log-weights (a weighted key set) */
    ps_u32 dropped;          /* dropped-key residual: the samples are draws of the */
    float keep_mix;          /* dropped keys and a kept weight w is 1 + keep_mix (w - 1) */
} ps_hyper_params;
#define PS_HYPER_PARAMS_WORDS 23

/* Block pairing (docs/HYPER.md): sorted query position p meets key block
 * floor(p * n_k / (n_q * b)), the block holding the keys at the same quantile
 * of the LSH order. With n_q = n_k it is block p / b on both sides, as in
 * HyperAttention's reference code, which pads queries and keys to a multiple
 * of b; a short last key block gets a proportionally short query block. In
 * 64 bits: p * n_k overflows 32. Query block i is the positions
 * [ps_hyper_query_block_start(i), ps_hyper_query_block_start(i + 1)). */
PS_PHILOX_FN ps_i32 ps_hyper_row_block(ps_i32 p, ps_i32 n_q, ps_i32 n_k, ps_i32 b)
{
    return (ps_i32)(((ps_u64)p * (ps_u64)n_k) / ((ps_u64)n_q * (ps_u64)b));
}

/* First sorted query position of query block i: ceil(i * b * n_q / n_k),
 * at most n_q. */
PS_PHILOX_FN ps_i32 ps_hyper_query_block_start(ps_i32 i, ps_i32 n_q, ps_i32 n_k, ps_i32 b)
{
    const ps_u64 first = ((ps_u64)i * (ps_u64)b * (ps_u64)n_q + (ps_u64)n_k - 1u) / (ps_u64)n_k;
    return first < (ps_u64)n_q ? (ps_i32)first : n_q;
}

/* Rows of the longest query block: ceil(b * n_q / n_k), since
 * ceil(x + y) <= ceil(x) + ceil(y); at most n_q. Sizes the launch. */
PS_PHILOX_FN ps_i32 ps_hyper_query_block_max(ps_i32 n_q, ps_i32 n_k, ps_i32 b)
{
    return ps_hyper_query_block_start(1, n_q, n_k, b);
}

/* Decode against a key cache, decode_partial_* and decode_merge
 * (cl/decode.cl), filled per call by lib/decode.c. A KV head's attended keys
 * are numbered virtually: [0, sink_len) are cache rows 0.., the next `kept`
 * are kept slots 0.., the rest cache rows win_start..length - 1. */
typedef struct ps_decode_params {
    ps_i32 n_q;         /* queries of the call: the last n_q positions */
    ps_i32 rows;        /* query rows per KV head: group * n_q */
    ps_i32 heads;       /* query heads */
    ps_i32 group;       /* query heads per KV head */
    ps_i32 d, dv;       /* head dimensions of Q/K and of V/O */
    ps_i32 length;      /* keys cached per KV head */
    ps_i32 sink_len;    /* virtual keys [0, sink_len): cache rows */
    ps_i32 kept;        /* then kept slots [0, kept) */
    ps_i32 win_start;   /* then cache rows [win_start, length) */
    ps_i32 total;       /* virtual keys: sink_len + kept + length - win_start */
    ps_i32 split_keys;  /* virtual keys per split (a multiple of the key tile) */
    ps_i32 splits;      /* partial results per query row */
    ps_i32 cache_rows;  /* row stride of a KV head in the cache: its capacity */
    ps_i32 kept_rows;   /* the same in the kept copy: the kept set's slots */
    ps_i32 row_block;   /* query rows per work-item (CPU) or work-group (GPU) */
    float scale_log2;   /* softmax scale times log2 e */
} ps_decode_params;
#define PS_DECODE_PARAMS_WORDS 17

/* The size checks (C99 has no static assert): a negative array size. */
typedef char ps_flash_params_size_check
    [sizeof(ps_flash_params) == 4 * PS_FLASH_PARAMS_WORDS ? 1 : -1];
typedef char ps_hyper_params_size_check
    [sizeof(ps_hyper_params) == 4 * PS_HYPER_PARAMS_WORDS ? 1 : -1];
typedef char ps_decode_params_size_check
    [sizeof(ps_decode_params) == 4 * PS_DECODE_PARAMS_WORDS ? 1 : -1];

#endif /* PS_ATTENTION_PARAMS_H */
