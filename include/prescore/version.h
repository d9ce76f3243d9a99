/* libprescore-cl version. meson.build reads these three lines for the project
 * version and the soversion (the major number), so keep their shape. */
#ifndef PRESCORE_VERSION_H
#define PRESCORE_VERSION_H

#define PS_VERSION_MAJOR 0
#define PS_VERSION_MINOR 2
#define PS_VERSION_PATCH 0

#define PS_VERSION_STRING_(a, b, c) #a "." #b "." #c
#define PS_VERSION_STRING_X(a, b, c) PS_VERSION_STRING_(a, b, c)
#define PS_VERSION_STRING \
    PS_VERSION_STRING_X(PS_VERSION_MAJOR, PS_VERSION_MINOR, PS_VERSION_PATCH)

#endif
