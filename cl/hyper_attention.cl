/* hyper_attention: kernels land here (see lib/). */
