/* The device selector (ps_context_options.device, PRESCORE_DEVICE and the
 * benchmark's --device): parsing the text and choosing from a device list.
 * Pure logic, no OpenCL calls, so that it is unit-tested without a device.
 *
 * Syntax (surrounding whitespace ignored, keywords case-insensitive):
 *   NULL, "", "default"  the first GPU, else the first device
 *   "gpu", "cpu"         the first device of that type
 *   "P:D"                platform index P, device index D within it (decimal)
 *   anything else        a case-insensitive substring of the device name;
 *                        if no device name contains it, of the vendor, then
 *                        of the platform name ("pocl", "rusticl", "AMD
 *                        Accelerated Parallel Processing": AMD GPUs report
 *                        names like "gfx1100" that do not say "AMD").
 * Text made only of digits, ':' and signs that contains a ':' is an index
 * selector and must be well formed ("1:", ":2", "1:2:3", "-1:0" and numbers
 * above UINT_MAX are errors); text with any other character is a name, so
 * ROCm names such as "gfx90a:sramecc+:xnack-" still work. */
#ifndef PRESCORE_DEVICE_SELECT_H
#define PRESCORE_DEVICE_SELECT_H

#include "prescore/prescore.h"

#include <stddef.h>

typedef enum ps_select_kind {
    PS_SELECT_DEFAULT,
    PS_SELECT_GPU,
    PS_SELECT_CPU,
    PS_SELECT_INDEX,
    PS_SELECT_NAME
} ps_select_kind;

typedef struct ps_selector {
    ps_select_kind kind;
    unsigned platform, device;     /* PS_SELECT_INDEX */
    char name[PS_INFO_STRING_MAX]; /* PS_SELECT_NAME: the trimmed text */
} ps_selector;

/** Parses a selector.
 * @param text     the selector; NULL means the default
 * @param out      receives the parsed selector
 * @param msg      receives a description of the problem ("" on success); may be NULL
 * @param msg_size size of @p msg, the message is truncated to fit
 * @return PS_OK, or PS_ERR_INVALID_ARGUMENT for a NULL @p out, a malformed
 *         "P:D" selector or a name of PS_INFO_STRING_MAX characters or more */
ps_status ps_selector_parse(const char *text, ps_selector *out, char *msg, size_t msg_size);

/** Chooses a device: the first in @p devices (listing order) that the selector
 * matches; for names, a device-name match wins over a vendor match, which
 * wins over a platform-name match.
 * @param chosen   receives the position in @p devices
 * @param msg      as for ps_selector_parse; on PS_ERR_DEVICE_NOT_FOUND it names
 *                 the selector and lists the devices present
 * @return PS_OK, PS_ERR_INVALID_ARGUMENT (NULL @p sel or @p chosen, NULL
 *         @p devices with a non-zero count, unknown kind), PS_ERR_NO_DEVICE
 *         (@p count is 0) or PS_ERR_DEVICE_NOT_FOUND */
ps_status ps_selector_choose(const ps_selector *sel, const ps_device_info *devices,
                             size_t count, size_t *chosen, char *msg, size_t msg_size);

#endif
