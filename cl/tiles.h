/* Tile constants fixed at compile time and shared by the host (C99) and the
 * kernels (OpenCL C 1.2), like philox.h: lib/program.c prepends this file to
 * every program, and the host stages include it, so a buffer the host pads
 * and the tile a kernel reads cannot disagree. Sizes chosen from the device
 * limits at run time are in lib/tuning.c instead (passed as -D options). */
#ifndef PS_TILES_H
#define PS_TILES_H

/* Keys per tile of the CPU kernel shape: one float16 row of scores per query
 * (exact attention, HyperAttention blocks and residual). Host buffers of
 * keys are padded to a multiple of it. */
#define PS_KTILE_CPU 16

/* Decode, GPU shape (cl/decode.cl decode_partial_gpu): most query rows per
 * work-group, outputs per work-item, and keys per tile, which is the
 * work-group size (lib/decode.c sizes the group and the row block within
 * them; the tuning caps groups at 64). */
#define PS_DEC_ROWS 8
#define PS_DEC_OUT 16
#define PS_DEC_TILE 64

#endif
