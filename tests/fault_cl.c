/* Test-only OpenCL interposer, see fault_cl.h. The test executable defines
 * the wrapped cl* functions itself, so the statically linked library binds to
 * these; each forwards to the ICD loader's function found with
 * dlsym(RTLD_NEXT). The loader reaches the driver through its dispatch table,
 * never back through these symbols. */
#define _GNU_SOURCE
#include "fault_cl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

static long calls;
static long fail_at = -1;
static long live[FAULT_KINDS];
static const char *fired_name;
static const char *log_name[FAULT_CL_LOG];
static void *log_site[FAULT_CL_LOG];

void fault_cl_arm(long index)
{
    calls = 0;
    fail_at = index;
    fired_name = NULL;
    for (int i = 0; i < FAULT_KINDS; i++)
        live[i] = 0;
}

void fault_cl_disarm(void) { fail_at = -1; }
long fault_cl_calls(void) { return calls; }
long fault_cl_live(int kind) { return kind >= 0 && kind < FAULT_KINDS ? live[kind] : 0; }
int fault_cl_fired(void) { return fired_name != NULL; }
const char *fault_cl_fired_name(void) { return fired_name ? fired_name : ""; }

const char *fault_cl_call_name(long index)
{
    return index >= 0 && index < FAULT_CL_LOG && index < calls ? log_name[index] : NULL;
}

void *fault_cl_call_site(long index)
{
    return index >= 0 && index < FAULT_CL_LOG && index < calls ? log_site[index] : NULL;
}

/* Counts one call; 1 when this is the one to fail. */
static int should_fail(const char *name, void *site)
{
    const long i = calls++;
    if (i < FAULT_CL_LOG) {
        log_name[i] = name;
        log_site[i] = site;
    }
    if (i != fail_at)
        return 0;
    fired_name = name;
    return 1;
}

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "fault_cl: %s not found behind the interposer\n", name);
        abort(); /* test setup broken: nothing sensible to forward to */
    }
    return f;
}

/* Declares the pointer to the real function, looked up once. */
#define REAL(ret, name, params)                                                \
    typedef ret(CL_API_CALL *name##_fn) params;                                \
    static name##_fn real_##name;                                              \
    if (!real_##name)                                                          \
        real_##name = (name##_fn)real(#name)

#define SITE __builtin_return_address(0)

static void count_event(cl_int err, cl_event *event)
{
    if (err == CL_SUCCESS && event && *event)
        live[FAULT_EVENT]++;
}

CL_API_ENTRY cl_mem CL_API_CALL clCreateBuffer(cl_context context, cl_mem_flags flags,
                                               size_t size, void *host_ptr,
                                               cl_int *errcode_ret)
{
    REAL(cl_mem, clCreateBuffer, (cl_context, cl_mem_flags, size_t, void *, cl_int *));
    if (should_fail("clCreateBuffer", SITE)) {
        if (errcode_ret)
            *errcode_ret = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    cl_mem m = real_clCreateBuffer(context, flags, size, host_ptr, errcode_ret);
    if (m)
        live[FAULT_MEM]++;
    return m;
}

CL_API_ENTRY cl_int CL_API_CALL clRetainMemObject(cl_mem memobj)
{
    REAL(cl_int, clRetainMemObject, (cl_mem));
    cl_int err = real_clRetainMemObject(memobj);
    if (err == CL_SUCCESS)
        live[FAULT_MEM]++;
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clReleaseMemObject(cl_mem memobj)
{
    REAL(cl_int, clReleaseMemObject, (cl_mem));
    cl_int err = real_clReleaseMemObject(memobj);
    if (err == CL_SUCCESS)
        live[FAULT_MEM]--;
    return err;
}

CL_API_ENTRY cl_kernel CL_API_CALL clCreateKernel(cl_program program, const char *kernel_name,
                                                  cl_int *errcode_ret)
{
    REAL(cl_kernel, clCreateKernel, (cl_program, const char *, cl_int *));
    if (should_fail("clCreateKernel", SITE)) {
        if (errcode_ret)
            *errcode_ret = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    cl_kernel k = real_clCreateKernel(program, kernel_name, errcode_ret);
    if (k)
        live[FAULT_KERNEL]++;
    return k;
}

CL_API_ENTRY cl_int CL_API_CALL clRetainKernel(cl_kernel kernel)
{
    REAL(cl_int, clRetainKernel, (cl_kernel));
    cl_int err = real_clRetainKernel(kernel);
    if (err == CL_SUCCESS)
        live[FAULT_KERNEL]++;
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clReleaseKernel(cl_kernel kernel)
{
    REAL(cl_int, clReleaseKernel, (cl_kernel));
    cl_int err = real_clReleaseKernel(kernel);
    if (err == CL_SUCCESS)
        live[FAULT_KERNEL]--;
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clSetKernelArg(cl_kernel kernel, cl_uint arg_index,
                                               size_t arg_size, const void *arg_value)
{
    REAL(cl_int, clSetKernelArg, (cl_kernel, cl_uint, size_t, const void *));
    if (should_fail("clSetKernelArg", SITE))
        return CL_INVALID_ARG_VALUE;
    return real_clSetKernelArg(kernel, arg_index, arg_size, arg_value);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueNDRangeKernel(
    cl_command_queue queue, cl_kernel kernel, cl_uint work_dim, const size_t *offset,
    const size_t *global, const size_t *local, cl_uint n_wait, const cl_event *wait,
    cl_event *event)
{
    REAL(cl_int, clEnqueueNDRangeKernel,
         (cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
          const size_t *, cl_uint, const cl_event *, cl_event *));
    if (should_fail("clEnqueueNDRangeKernel", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err = real_clEnqueueNDRangeKernel(queue, kernel, work_dim, offset, global, local,
                                             n_wait, wait, event);
    count_event(err, event);
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue queue, cl_mem buffer,
                                                    cl_bool blocking, size_t offset,
                                                    size_t size, void *ptr, cl_uint n_wait,
                                                    const cl_event *wait, cl_event *event)
{
    REAL(cl_int, clEnqueueReadBuffer,
         (cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *, cl_uint,
          const cl_event *, cl_event *));
    if (should_fail("clEnqueueReadBuffer", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err =
        real_clEnqueueReadBuffer(queue, buffer, blocking, offset, size, ptr, n_wait, wait, event);
    count_event(err, event);
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue queue, cl_mem buffer,
                                                     cl_bool blocking, size_t offset,
                                                     size_t size, const void *ptr,
                                                     cl_uint n_wait, const cl_event *wait,
                                                     cl_event *event)
{
    REAL(cl_int, clEnqueueWriteBuffer,
         (cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *, cl_uint,
          const cl_event *, cl_event *));
    if (should_fail("clEnqueueWriteBuffer", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err = real_clEnqueueWriteBuffer(queue, buffer, blocking, offset, size, ptr, n_wait,
                                           wait, event);
    count_event(err, event);
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueCopyBuffer(cl_command_queue queue, cl_mem src,
                                                    cl_mem dst, size_t src_offset,
                                                    size_t dst_offset, size_t size,
                                                    cl_uint n_wait, const cl_event *wait,
                                                    cl_event *event)
{
    REAL(cl_int, clEnqueueCopyBuffer,
         (cl_command_queue, cl_mem, cl_mem, size_t, size_t, size_t, cl_uint, const cl_event *,
          cl_event *));
    if (should_fail("clEnqueueCopyBuffer", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err = real_clEnqueueCopyBuffer(queue, src, dst, src_offset, dst_offset, size,
                                          n_wait, wait, event);
    count_event(err, event);
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueFillBuffer(cl_command_queue queue, cl_mem buffer,
                                                    const void *pattern, size_t pattern_size,
                                                    size_t offset, size_t size,
                                                    cl_uint n_wait, const cl_event *wait,
                                                    cl_event *event)
{
    REAL(cl_int, clEnqueueFillBuffer,
         (cl_command_queue, cl_mem, const void *, size_t, size_t, size_t, cl_uint,
          const cl_event *, cl_event *));
    if (should_fail("clEnqueueFillBuffer", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err = real_clEnqueueFillBuffer(queue, buffer, pattern, pattern_size, offset, size,
                                          n_wait, wait, event);
    count_event(err, event);
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueMarkerWithWaitList(cl_command_queue queue,
                                                            cl_uint n_wait,
                                                            const cl_event *wait,
                                                            cl_event *event)
{
    REAL(cl_int, clEnqueueMarkerWithWaitList,
         (cl_command_queue, cl_uint, const cl_event *, cl_event *));
    if (should_fail("clEnqueueMarkerWithWaitList", SITE))
        return CL_OUT_OF_RESOURCES;
    cl_int err = real_clEnqueueMarkerWithWaitList(queue, n_wait, wait, event);
    count_event(err, event);
    return err;
}

/* A failed wait or finish does not wait: the library must cope with work
 * that may still be running (it releases objects, which OpenCL defers). */
CL_API_ENTRY cl_int CL_API_CALL clFinish(cl_command_queue queue)
{
    REAL(cl_int, clFinish, (cl_command_queue));
    if (should_fail("clFinish", SITE))
        return CL_OUT_OF_RESOURCES;
    return real_clFinish(queue);
}

CL_API_ENTRY cl_int CL_API_CALL clWaitForEvents(cl_uint n, const cl_event *list)
{
    REAL(cl_int, clWaitForEvents, (cl_uint, const cl_event *));
    if (should_fail("clWaitForEvents", SITE))
        return CL_OUT_OF_RESOURCES;
    return real_clWaitForEvents(n, list);
}

CL_API_ENTRY cl_int CL_API_CALL clRetainEvent(cl_event event)
{
    REAL(cl_int, clRetainEvent, (cl_event));
    cl_int err = real_clRetainEvent(event);
    if (err == CL_SUCCESS)
        live[FAULT_EVENT]++;
    return err;
}

CL_API_ENTRY cl_int CL_API_CALL clReleaseEvent(cl_event event)
{
    REAL(cl_int, clReleaseEvent, (cl_event));
    cl_int err = real_clReleaseEvent(event);
    if (err == CL_SUCCESS)
        live[FAULT_EVENT]--;
    return err;
}
