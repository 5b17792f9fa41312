/* worker.c — the worker agent. (Being written.) */
#include "cli/cli.h"

#include <stdio.h>

int weir_cmd_worker(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "weir worker: not implemented yet\n");
    return WEIR_EXIT_FAIL;
}
