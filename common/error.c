/* error.c — messages and names for the error table in error.h. */
#include "common/error.h"

const char *weir_strerror(int err) {
    switch (err) {
#define WEIR_ERR_MSG(name, value, msg) case value: return msg;
        WEIR_ERRORS(WEIR_ERR_MSG)
#undef WEIR_ERR_MSG
    }
    return "unknown error";
}

const char *weir_errname(int err) {
    switch (err) {
#define WEIR_ERR_NAME(name, value, msg) case value: return #name;
        WEIR_ERRORS(WEIR_ERR_NAME)
#undef WEIR_ERR_NAME
    }
    return "EUNKNOWN";
}
