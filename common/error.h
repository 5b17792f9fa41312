/* error.h — weir's one error table.
 *
 * Every fallible function returns 0 on success or a negative WEIR_E* code.
 * There is no global "last error": a function that has more to say takes a
 * caller's buffer for the message. */
#ifndef WEIR_COMMON_ERROR_H
#define WEIR_COMMON_ERROR_H

/* X(name, value, message) */
#define WEIR_ERRORS(X)                                                   \
    X(OK,        0,   "success")                                         \
    X(ENOMEM,   -1,   "out of memory")                                   \
    X(EINVAL,   -2,   "invalid argument")                                \
    X(EIO,      -3,   "input/output error")                              \
    X(ENOENT,   -4,   "not found")                                       \
    X(EEXIST,   -5,   "already exists")                                  \
    X(ELIMIT,   -6,   "limit exceeded")                                  \
    X(ETIMEDOUT,-7,   "timed out")                                       \
    X(EDB,      -8,   "database error")                                  \
    X(EHTTP,    -9,   "HTTP error")                                      \
    X(ELUA,     -10,  "Lua error")                                       \
    X(ECONFLICT,-11,  "conflict")                                        \
    X(EAUTH,    -12,  "not authorized")                                  \
    X(ECOMPILE, -13,  "pipeline does not compile")                       \
    X(ECHECKSUM,-14,  "checksum mismatch")                               \
    X(EUNAVAIL, -15,  "service unavailable")

typedef enum {
#define WEIR_ERR_ENUM(name, value, msg) WEIR_##name = value,
    WEIR_ERRORS(WEIR_ERR_ENUM)
#undef WEIR_ERR_ENUM
} weir_err_t;

/* A message for a person; never NULL, static storage. */
const char *weir_strerror(int err);
/* The code's name without prefix, e.g. "ELIMIT"; never NULL, static storage. */
const char *weir_errname(int err);

#endif
