/* Internal to eval: what run.c asks of report.c. */
#ifndef REIN_EVAL_INT_H
#define REIN_EVAL_INT_H

#include "eval.h"

/* Adds the per-case and overall measures to result (its cases' trials
 * filled in by rein_eval_run). REIN_ENOMEM only. */
int rein_eval_summarize(json_t *result, const rein_eval_suite *s);

#endif
