/* Zero-shot evaluation shared by `bitllm eval` and `bitllm compare`: loading task files, running
 * them with progress on stderr, and the JSON/text form of the results. */
#ifndef BITLLM_CMD_EVAL_H
#define BITLLM_CMD_EVAL_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "bitllm/tasks.h"
#include "cli_util.h"

/* The folder holding llm-foundry-icl/, piqa/ and hellaswag/: $BITLLM_DATA/data, else
 * ../shared/data. */
const char *eval_default_data_dir(void);
/* Parses the task list and loads every task (errors printed, prefixed with cmd). Returns the
 * number of sets loaded into sets[BL_TASK_COUNT], or -1. */
int eval_load_tasks(const char *cmd, const char *list, const char *data_dir, int limit,
                    bl_task_set **sets);
void eval_free_tasks(bl_task_set **sets, int n);
/* Runs every set on m with progress lines on stderr; res[n]. dump (may be NULL) receives one JSON
 * line per item. Returns 0, or 1 with the error printed. */
int eval_run_tasks(const char *cmd, const bl_model *m, bl_task_set *const *sets, int n,
                   const bl_eval_opts *o, cli_outfile *dump, bl_task_result *res);
/* {"piqa": {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", ...}, ...}; *average = mean
 * acc over the tasks. */
cJSON *eval_tasks_json(bl_task_set *const *sets, const bl_task_result *res, int n,
                       double *average);
/* One line per task, then the average. */
void eval_print_table(FILE *f, const bl_task_result *res, int n);

/* bitllm report: reads DIR/results.jsonl (the latest line per run label wins) and writes
 * DIR/report.md and DIR/ppl_vs_bpw.png (or .svg) with gnuplot; print_table also prints the
 * Markdown table on stdout. Returns 0, or 1 with the error printed. */
int report_render(const char *cmd, const char *dir, bool print_table);

#endif
