/* cron.h — five-field cron expressions and their next fire time, in UTC.
 *
 * Fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or jan-dec) day-of-week
 * (0-7 or sun-sat; 0 and 7 are Sunday). Each field is a comma list of `*`, `N`, `N-M`, with an
 * optional `/STEP` (`N/STEP` means N to the field's end). Macros: @hourly, @daily (@midnight),
 * @weekly, @monthly, @yearly (@annually). Days follow Vixie cron: when both day fields are
 * restricted (neither starts with `*`) a day matches if either field does; otherwise both must.
 * Not supported: seconds, years, Quartz's ? L W #, @reboot. Time zones are the scheduler's
 * business: this file only knows UTC. */
#ifndef WEIR_DSL_CRON_H
#define WEIR_DSL_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    uint64_t minutes;  /* bit m set: minute m */
    uint32_t hours;    /* bit h: hour h */
    uint32_t mdays;    /* bit d: day of month d (1-31) */
    uint16_t months;   /* bit m: month m (1-12) */
    uint8_t wdays;     /* bit d: day of week d (0-6, Sunday = 0) */
    uint8_t day_or;    /* both day fields restricted: either may match */
} weir_cron_t;

/* Parses expr into *out. Returns 0, or WEIR_EINVAL with a message for a person in err
 * (e.g. "hour: 25 is out of range 0-23"). Refuses expressions that can never fire
 * ("0 0 30 2 *"). */
int weir_cron_parse(const char *expr, weir_cron_t *out, char *err, size_t errlen);

/* The first fire time strictly after `after`, in whole minutes, UTC; (time_t)-1 when there is
 * none in the next 30 years (only possible for a hand-built weir_cron_t). */
time_t weir_cron_next(const weir_cron_t *c, time_t after);

#endif
