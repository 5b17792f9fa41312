/* log.c — stderr logging with a UTC timestamp and a level. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static weir_log_level_t log_level = WEIR_LOG_INFO;

void weir_log_init(void) {
    const char *v = getenv("WEIR_LOG");
    if (!v) return;
    if (!strcmp(v, "error")) log_level = WEIR_LOG_ERROR;
    else if (!strcmp(v, "warn")) log_level = WEIR_LOG_WARN;
    else if (!strcmp(v, "debug")) log_level = WEIR_LOG_DEBUG;
    else log_level = WEIR_LOG_INFO;
}

void weir_log(weir_log_level_t level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > log_level) return;
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines whole when several processes share stderr. */
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts, now.tv_nsec / 1000000L, names[level], line);
}
