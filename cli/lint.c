/* lint.c — placeholder until the DSL lands. */
#include "cli/cli.h"
int weir_cmd_lint(int argc, char **argv) { (void)argc; (void)argv; return 1; }
