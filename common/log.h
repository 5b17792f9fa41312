/* log.h — one-line structured logs on stderr for the scheduler and workers.
 *
 * Not a logging framework: no sinks, no rotation. The level comes from
 * WEIR_LOG (error, warn, info, debug; default info). */
#ifndef WEIR_COMMON_LOG_H
#define WEIR_COMMON_LOG_H

typedef enum { WEIR_LOG_ERROR, WEIR_LOG_WARN, WEIR_LOG_INFO, WEIR_LOG_DEBUG } weir_log_level_t;

/* Reads WEIR_LOG once; safe to call again. */
void weir_log_init(void);
void weir_log(weir_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define weir_log_error(...) weir_log(WEIR_LOG_ERROR, __VA_ARGS__)
#define weir_log_warn(...)  weir_log(WEIR_LOG_WARN, __VA_ARGS__)
#define weir_log_info(...)  weir_log(WEIR_LOG_INFO, __VA_ARGS__)
#define weir_log_debug(...) weir_log(WEIR_LOG_DEBUG, __VA_ARGS__)

#endif
