/* score: kernels land here (see lib/). */
