/* Test-only OpenCL interposer (tests/fault_cl.c): linked into a test
 * executable, it sits between the library and the ICD loader, counts the
 * wrapped calls, can make the N-th one fail with an OpenCL error, and counts
 * live cl_mem / cl_kernel / cl_event objects (creates + retains - releases).
 * Single-threaded use only. */
#ifndef PRESCORE_TEST_FAULT_CL_H
#define PRESCORE_TEST_FAULT_CL_H

#include <stddef.h>

enum { FAULT_MEM = 0, FAULT_KERNEL = 1, FAULT_EVENT = 2, FAULT_KINDS = 3 };

/* Starts a counting window: call index and live counts restart at 0. From
 * then on the call with index `fail_at` (0-based) fails; -1: none fails. */
void fault_cl_arm(long fail_at);
/* Stops failing (counting goes on). */
void fault_cl_disarm(void);
/* Wrapped calls since fault_cl_arm. */
long fault_cl_calls(void);
/* Net objects of `kind` created (or retained) minus released since fault_cl_arm. */
long fault_cl_live(int kind);
/* 1 when the armed call has failed; its function name and call site. */
int fault_cl_fired(void);
const char *fault_cl_fired_name(void);
/* Function name and caller address of call `index` of the current window
 * (recorded for the first FAULT_CL_LOG calls; NULL past that). */
#define FAULT_CL_LOG 16384
const char *fault_cl_call_name(long index);
void *fault_cl_call_site(long index);

#endif
