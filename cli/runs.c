/* runs.c — the operator commands for runs: trigger, runs, run show|watch|cancel|retry, logs,
 * approve, reject, workers. (Being written.) */
#include "cli/cli.h"

#include <stdio.h>

static int not_yet(const char *what) {
    fprintf(stderr, "weir %s: not implemented yet\n", what);
    return WEIR_EXIT_FAIL;
}

int weir_cmd_trigger(int argc, char **argv) { (void)argc; (void)argv; return not_yet("trigger"); }
int weir_cmd_runs(int argc, char **argv) { (void)argc; (void)argv; return not_yet("runs"); }
int weir_cmd_run(int argc, char **argv) { (void)argc; (void)argv; return not_yet("run"); }
int weir_cmd_logs(int argc, char **argv) { (void)argc; (void)argv; return not_yet("logs"); }
int weir_cmd_approve(int argc, char **argv) { (void)argc; (void)argv; return not_yet("approve"); }
int weir_cmd_reject(int argc, char **argv) { (void)argc; (void)argv; return not_yet("reject"); }
int weir_cmd_workers(int argc, char **argv) { (void)argc; (void)argv; return not_yet("workers"); }
