/* lsh_sort: kernels land here (see lib/). */
