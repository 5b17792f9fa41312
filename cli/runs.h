/* runs.h — what the run commands share (cli/runs.c: the commands and their flags;
 * cli/runshow.c: a run drawn as a header and a DAG tree, `run show` and `run watch`).
 * Private to cli/; the JSON they read is the API's (docs/api.md, "Runs"). */
#ifndef WEIR_CLI_RUNS_H
#define WEIR_CLI_RUNS_H

#include "cli/cli.h"

#include <getopt.h>
#include <stdint.h>

/* How often the CLI polls while it waits: a run (--wait, watch) and a log (-f). */
#define CLI_WAIT_POLL_MS 200
#define CLI_WATCH_POLL_MS 500
#define CLI_LOG_POLL_MS 300
/* How long a waiting command keeps retrying an unreachable scheduler (a restart) before it gives up. */
#define CLI_UNREACHABLE_GRACE_MS 30000

/* True for the states a run ends in: succeeded, failed, cancelled. */
int cli_run_ended(const char *state);
/* True for the states a task ends in (succeeded, failed, skipped, cancelled, blessed, rejected). */
int cli_task_finished(const char *state);

/* Parses a run id (its number; "#42" is accepted); prints why not and returns -1. */
int64_t cli_run_id(const char *cmd, const char *arg);
/* True when s is a pipeline or task name as the DSL allows it; prints why not. */
int cli_name_ok(const char *cmd, const char *what, const char *s);

/* Milliseconds since the epoch of an ISO 8601 timestamp from the API; -1 if it is not one. */
int64_t cli_iso_ms(const char *iso);
/* Wall clock, milliseconds since the epoch. */
int64_t cli_wall_ms(void);
/* "850ms", "4.2s", "12s", "3m07s", "2h05m", "3d04h"; "-" for a negative value. */
const char *cli_duration(int64_t ms, char *buf, size_t size);
/* How long a run or task has taken: duration_ms when the API gives it, else from started_at to
 * finished_at, or to now while it runs; -1 when it has not started. */
int64_t cli_elapsed_ms(const json_t *obj);
/* A JSON field as text: strings as they are, numbers printed, else NULL. buf holds the number. */
const char *cli_field(const json_t *obj, const char *key, char *buf, size_t size);

/* GET /v1/runs/ID; the exit code as cli_call returns it. */
int cli_get_run(const weir_config_t *c, int64_t id, weir_response_t *res);

/* One poll of a run for the commands that wait: 0 with the run in res; CLI_RETRY (res freed) while
 * the scheduler cannot be reached or answers 503, quietly, until CLI_UNREACHABLE_GRACE_MS have passed
 * since *since (keep it -1 between polls of one wait); else the exit code, with the reason printed. */
#define CLI_RETRY (-1)
int cli_poll_run(const weir_config_t *c, int64_t id, weir_response_t *res, int64_t *since);
/* Sleeps ms milliseconds. */
void cli_sleep_ms(int ms);

/* Writes the run (GET /v1/runs/ID's answer) for people: a header, then its tasks as a tree. */
void cli_run_render(FILE *out, const json_t *run);
/* A string that changes when anything but the clock changes in the run: states, attempts, workers,
 * decisions and errors. Caller frees. */
char *cli_run_signature(const json_t *run);

/* `weir run show` and `weir run watch` (runshow.c). */
int cli_run_show(int argc, char **argv);
int cli_run_watch(int argc, char **argv);

/* Parses the flags every run command shares (--url, --token, -o) when opt is one of them: 1 when
 * it was (with *rc set to 2 on a bad -o), 0 when it was not. Use CLI_COMMON_OPTIONS in the table. */
enum { CLI_OPT_URL = 1000, CLI_OPT_TOKEN, CLI_OPT_FIRST_FREE };
#define CLI_COMMON_OPTIONS                                                                       \
    {"url", required_argument, NULL, CLI_OPT_URL}, {"token", required_argument, NULL, CLI_OPT_TOKEN}, \
    {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}
int cli_common_flag(int opt, weir_config_t *cfg, int *json, int *rc);
/* The next flag that is not a common one (getopt_long over opts, which hold CLI_COMMON_OPTIONS),
 * or -1 at the end, or -2 with *rc set: after -h (usage on stdout, 0), an unknown or incomplete
 * flag (usage on stderr, 2) or a bad -o (2). */
int cli_next_flag(int argc, char **argv, const char *shortopts, const struct option *opts, const char *usage,
                  weir_config_t *cfg, int *json, int *rc);
/* The common flags' lines for a command's usage text. */
#define COMMON_HELP "  --url URL, --token T   the scheduler (default: WEIR_URL/WEIR_TOKEN or ~/.weir/client.json)\n" \
                    "  -o json                print the API's JSON instead of text\n"
/* Prints a JSON value for scripts, indented. */
void cli_print_json(const json_t *j);

#endif
