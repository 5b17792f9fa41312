/* acme.c — a plugin built outside weir, as docs/plugins.md describes, for the tests of the
 * plugin host: it only includes <weir/plugin.h>. Built twice by tests/cli/plugins.sh: as is,
 * and with -DACME_ABI=99 to be refused.
 *
 *   acme.echo   writes its settings to output "echo", a metric, a log line, progress, a signal
 *   acme.fail   fails with a message through host->fail
 *   acme.crash  dereferences NULL: the attempt fails, the worker lives on
 *   acme.wait   runs until cancelled, then returns */
#define _POSIX_C_SOURCE 200809L
#include <weir/plugin.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef ACME_ABI
#define ACME_ABI WEIR_PLUGIN_ABI_VERSION
#endif

static int echo(weir_step_ctx_t *ctx, const weir_host_t *host) {
    const char *path = host->output(ctx, "echo");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) { host->fail(ctx, "acme.echo: cannot write output echo"); return 1; }
    fprintf(f, "%s\n", host->settings(ctx));
    fclose(f);
    if (host->output(ctx, "Bad-Name") != NULL) { host->fail(ctx, "acme.echo: a bad output name was accepted"); return 1; }
    host->log(ctx, WEIR_PLUGIN_LOG_INFO, "acme says hello to run %s on device %d", host->run_info(ctx), host->device(ctx));
    host->progress(ctx, 0.5, "half way");
    host->metric(ctx, "answer", 42);
    host->emit_signal(ctx, "drift", "acme/model", 0.25, "{\"feature\": \"x\"}");
    return 0;
}

static int fail(weir_step_ctx_t *ctx, const weir_host_t *host) {
    host->fail(ctx, "acme.fail: the answer is not %s", host->settings(ctx));
    return 1;
}

static int crash(weir_step_ctx_t *ctx, const weir_host_t *host) {
    (void)ctx; (void)host;
    raise(SIGSEGV);
    return 0;
}

static int wait_cancel(weir_step_ctx_t *ctx, const weir_host_t *host) {
    host->log(ctx, WEIR_PLUGIN_LOG_INFO, "waiting to be cancelled");
    host->progress(ctx, 0.25, "waiting for a cancel");
    while (!host->cancelled(ctx)) nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    host->log(ctx, WEIR_PLUGIN_LOG_INFO, "cancelled: cleaning up");
    /* settings are {"marker": "/path"}: the file says the step saw the cancel and ended itself */
    const char *s = strstr(host->settings(ctx), "\"marker\":\"");
    char path[512];
    if (s && sscanf(s + 10, "%511[^\"]", path) == 1) {
        FILE *f = fopen(path, "w");
        if (f) { fputs("seen\n", f); fclose(f); }
    }
    return 1;
}

static const weir_plugin_step_t steps[] = {
    {.name = "acme.echo", .summary = "echo the settings", .outputs = "echo", .run = echo,
     .settings_schema = "{\"greeting\": {\"type\": \"string\", \"required\": true},"
                        " \"times\": {\"type\": \"integer\", \"default\": 1}}"},
    {.name = "acme.fail", .summary = "fail", .outputs = "", .run = fail, .settings_schema = NULL},
    {.name = "acme.crash", .summary = "crash", .outputs = "", .run = crash, .settings_schema = NULL},
    {.name = "acme.wait", .summary = "wait for a cancel", .outputs = "", .run = wait_cancel,
     .settings_schema = "{\"marker\": {\"type\": \"string\"}}"},
};

static const weir_plugin_t plugin = {
    .size = sizeof(weir_plugin_t), .abi_version = ACME_ABI, .name = "acme", .version = "1.0",
    .steps = steps, .nsteps = sizeof steps / sizeof steps[0], .step_size = sizeof(weir_plugin_step_t),
};

WEIR_PLUGIN_DEFINE(plugin)
