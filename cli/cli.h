/* cli.h — the subcommands of the one weir binary. Each takes argc/argv with
 * argv[0] being the subcommand's name, prints its own --help, and returns the
 * process exit code: 0 success, 1 failure of the operation, 2 usage error,
 * 3 cannot reach the scheduler or database, 4 not found. */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

enum { WEIR_EXIT_OK = 0, WEIR_EXIT_FAIL = 1, WEIR_EXIT_USAGE = 2, WEIR_EXIT_UNREACHABLE = 3, WEIR_EXIT_NOTFOUND = 4 };

int weir_cmd_lint(int argc, char **argv);

#endif
