/* Device enumeration and the device description (name, driver, limits). */
#include "internal.h"
#include "core/host_alloc.h"

#include <stdlib.h>
#include <string.h>

static void info_string(cl_device_id dev, cl_device_info what, char *out)
{
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, PS_INFO_STRING_MAX, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[PS_INFO_STRING_MAX - 1] = '\0';
}

const char *ps_device_type_string(ps_device_type type)
{
    switch (type) {
    case PS_DEVICE_CPU:
        return "cpu";
    case PS_DEVICE_GPU:
        return "gpu";
    case PS_DEVICE_ACCELERATOR:
        return "accelerator";
    default:
        return "other";
    }
}

static ps_device_type device_type(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU)
        return PS_DEVICE_GPU;
    if (t & CL_DEVICE_TYPE_CPU)
        return PS_DEVICE_CPU;
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return PS_DEVICE_ACCELERATOR;
    return PS_DEVICE_OTHER;
}

ps_status ps_device_info_query(cl_platform_id platform, cl_device_id device,
                               unsigned platform_index, unsigned device_index,
                               ps_device_info *info)
{
    cl_device_type type = 0;
    cl_uint cu = 0, vec = 0;
    size_t wg = 0;
    cl_ulong local = 0, global = 0, alloc = 0;
    cl_device_local_mem_type local_type = CL_LOCAL;
    char *ext = NULL;
    size_t ext_size = 0;

    memset(info, 0, sizeof *info);
    info->platform_index = platform_index;
    info->device_index = device_index;
    if (clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
        return PS_ERR_OPENCL;
    info->type = device_type(type);
    info_string(device, CL_DEVICE_NAME, info->name);
    info_string(device, CL_DEVICE_VENDOR, info->vendor);
    info_string(device, CL_DRIVER_VERSION, info->driver_version);
    info_string(device, CL_DEVICE_VERSION, info->device_version);
    info_string(device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version);
    if (platform &&
        clGetPlatformInfo(platform, CL_PLATFORM_NAME, PS_INFO_STRING_MAX,
                          info->platform_name, NULL) != CL_SUCCESS)
        info->platform_name[0] = '\0';
    info->platform_name[PS_INFO_STRING_MAX - 1] = '\0';

    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_TYPE, sizeof local_type, &local_type,
                    NULL);
    clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    clGetDeviceInfo(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof vec, &vec,
                    NULL);
    info->compute_units = cu ? cu : 1;
    info->max_work_group_size = wg ? wg : 1;
    info->local_mem_size = local;
    info->local_mem_is_global = local_type == CL_GLOBAL;
    info->global_mem_size = global;
    info->max_mem_alloc_size = alloc;
    info->preferred_vector_width_float = vec ? vec : 1;

    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) == CL_SUCCESS &&
        ext_size > 0 && (ext = ps_malloc(ext_size + 1)) != NULL) {
        if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) ==
            CL_SUCCESS) {
            ext[ext_size] = '\0';
            info->has_fp64 = strstr(ext, "cl_khr_fp64") != NULL;
            info->has_fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        }
        free(ext);
    }
    return PS_OK;
}

ps_status ps_device_list(ps_device_info *infos, size_t capacity, size_t *count)
{
    cl_uint np = 0;
    cl_platform_id *platforms = NULL;
    cl_device_id *devices = NULL;
    size_t found = 0;
    ps_status st = PS_OK;

    if (!count || (capacity > 0 && !infos))
        return PS_ERR_INVALID_ARGUMENT;
    *count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    /* -1001 is CL_PLATFORM_NOT_FOUND_KHR: an ICD loader without drivers. */
    if (err == -1001 || np == 0)
        return PS_OK; /* zero devices */
    if (err != CL_SUCCESS)
        return PS_ERR_OPENCL;
    platforms = ps_malloc(np * sizeof *platforms);
    PS_GOTO_IF(!platforms, PS_ERR_OUT_OF_HOST_MEMORY);
    PS_GOTO_IF(clGetPlatformIDs(np, platforms, NULL) != CL_SUCCESS, PS_ERR_OPENCL);
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS ||
            nd == 0)
            continue; /* a platform without devices is not an error */
        free(devices);
        devices = ps_malloc(nd * sizeof *devices);
        PS_GOTO_IF(!devices, PS_ERR_OUT_OF_HOST_MEMORY);
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, nd, devices, NULL) !=
            CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd; d++, found++) {
            if (found < capacity) {
                st = ps_device_info_query(platforms[p], devices[d], p, d, &infos[found]);
                PS_GOTO_IF(st != PS_OK, st);
            }
        }
    }
    *count = found;
cleanup:
    free(devices);
    free(platforms);
    return st;
}

ps_status ps_device_ids(unsigned platform_index, unsigned device_index,
                        cl_platform_id *platform, cl_device_id *device)
{
    cl_uint np = 0, nd = 0;
    cl_platform_id *platforms = NULL;
    cl_device_id *devices = NULL;
    ps_status st = PS_OK;

    PS_GOTO_IF(clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || platform_index >= np,
               PS_ERR_DEVICE_NOT_FOUND);
    platforms = ps_malloc(np * sizeof *platforms);
    PS_GOTO_IF(!platforms, PS_ERR_OUT_OF_HOST_MEMORY);
    PS_GOTO_IF(clGetPlatformIDs(np, platforms, NULL) != CL_SUCCESS, PS_ERR_OPENCL);
    PS_GOTO_IF(clGetDeviceIDs(platforms[platform_index], CL_DEVICE_TYPE_ALL, 0, NULL,
                              &nd) != CL_SUCCESS ||
                   device_index >= nd,
               PS_ERR_DEVICE_NOT_FOUND);
    devices = ps_malloc(nd * sizeof *devices);
    PS_GOTO_IF(!devices, PS_ERR_OUT_OF_HOST_MEMORY);
    PS_GOTO_IF(clGetDeviceIDs(platforms[platform_index], CL_DEVICE_TYPE_ALL, nd, devices,
                              NULL) != CL_SUCCESS,
               PS_ERR_OPENCL);
    *platform = platforms[platform_index];
    *device = devices[device_index];
cleanup:
    free(devices);
    free(platforms);
    return st;
}
