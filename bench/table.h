/* The built-in workload table of prescore-bench (no arguments, or --table):
 * workloads heavy and gaussian, n = 4096..32768, d = 64, exact and every
 * approximate method at an equal interaction budget, several method seeds,
 * errors against one exact reference per (workload, n). bench/README.md. */
#ifndef PRESCORE_BENCH_TABLE_H
#define PRESCORE_BENCH_TABLE_H

#include "run.h"

/* Method seeds per approximate row. */
#define BENCH_TABLE_SEEDS 3

/** Runs the table on @p run's context and reports every row.
 * @return an exit code */
int bench_table_run(bench_run *run);

#endif
