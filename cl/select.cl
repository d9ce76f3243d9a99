/* select: kernels land here (see lib/). */
