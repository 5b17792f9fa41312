/* test_cron.c — cron expressions: what parses, the exact message for what does not, and next
 * fire times checked against dates worked out by hand (UTC). */
#include "unit.h"
#include "common/error.h"
#include "dsl/cron.h"

#include <time.h>

static time_t utc(int y, int mo, int d, int h, int mi) {
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return timegm(&tm);
}

static const char *fmt(time_t t) {
    static char buf[32];
    struct tm tm;
    if (t == (time_t)-1) return "never";
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %a", &tm);
    return buf;
}

/* The next fire time of expr after the given moment, as text. */
static const char *next(const char *expr, time_t after) {
    weir_cron_t c;
    char err[160];
    if (weir_cron_parse(expr, &c, err, sizeof err)) {
        fprintf(stderr, "    %s: %s\n", expr, err);
        exit(1);
    }
    return fmt(weir_cron_next(&c, after));
}

static const char *parse_error(const char *expr) {
    static char err[160];
    weir_cron_t c;
    err[0] = '\0';
    int rc = weir_cron_parse(expr, &c, err, sizeof err);
    CHECK_EQ(rc, WEIR_EINVAL);
    return err;
}

TEST(parses_fields) {
    weir_cron_t c;
    char err[160];
    CHECK_EQ(weir_cron_parse("*/15 0-6/2,12 1,15 jan-mar,Dec mon-FRI", &c, err, sizeof err), 0);
    CHECK_EQ(c.minutes, (1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45));
    CHECK_EQ(c.hours, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6) | (1 << 12));
    CHECK_EQ(c.mdays, (1 << 1) | (1 << 15));
    CHECK_EQ(c.months, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 12));
    CHECK_EQ(c.wdays, 0x3e);
    CHECK_EQ(c.day_or, 1);
    CHECK_EQ(weir_cron_parse("  0 0 * * 7 ", &c, err, sizeof err), 0);
    CHECK_EQ(c.wdays, 1);  /* 7 is Sunday */
    CHECK_EQ(c.day_or, 0);
    CHECK_EQ(weir_cron_parse("0 0 * * 5-7", &c, err, sizeof err), 0);
    CHECK_EQ(c.wdays, 0x61);
    CHECK_EQ(weir_cron_parse("5/20 * * * *", &c, err, sizeof err), 0);
    CHECK_EQ(c.minutes, (1ULL << 5) | (1ULL << 25) | (1ULL << 45));
    CHECK_EQ(weir_cron_parse("@daily", &c, err, sizeof err), 0);
    CHECK_EQ(c.minutes, 1);
    CHECK_EQ(c.hours, 1);
    CHECK_EQ(weir_cron_parse("@HOURLY", &c, err, sizeof err), 0);
    CHECK_EQ(c.hours, 0xffffff);
}

TEST(parse_errors_say_what_is_wrong) {
    CHECK_STR(parse_error("0 25 * * *"), "hour: 25 is out of range 0-23");
    CHECK_STR(parse_error("60 * * * *"), "minute: 60 is out of range 0-59");
    CHECK_STR(parse_error("* * 0 * *"), "day-of-month: 0 is out of range 1-31");
    CHECK_STR(parse_error("* * * 13 *"), "month: 13 is out of range 1-12");
    CHECK_STR(parse_error("* * * * 8"), "day-of-week: 8 is out of range 0-7");
    CHECK_STR(parse_error("* * * *"), "expected 5 fields (minute hour day-of-month month day-of-week), found 4");
    CHECK_STR(parse_error("* * * * * *"),
              "expected 5 fields (minute hour day-of-month month day-of-week), found more than 5");
    CHECK_STR(parse_error(""), "expected 5 fields (minute hour day-of-month month day-of-week), found 0");
    CHECK_STR(parse_error("*/0 * * * *"), "minute: step 0 is out of range 1-59");
    CHECK_STR(parse_error("*/ * * * *"), "minute: a step needs a number after '/'");
    CHECK_STR(parse_error("5-2 * * * *"), "minute: range 5-2 goes backwards");
    CHECK_STR(parse_error("1,,2 * * * *"), "minute: empty item in a list");
    CHECK_STR(parse_error("* * * foo *"), "month: unknown name \"foo\"");
    CHECK_STR(parse_error("* * * * mon-funday"), "day-of-week: unknown name \"funday\"");
    CHECK_STR(parse_error("jan * * * *"), "minute: \"jan\" is not a number");
    CHECK_STR(parse_error("? * * * *"), "minute: unexpected character '?'");
    CHECK_STR(parse_error("* * L * *"), "day-of-month: \"L\" is not a number");
    CHECK_STR(parse_error("1-* * * * *"), "minute: unexpected character '*'");
    CHECK_STR(parse_error("@reboot"), "unknown macro \"@reboot\" (use @hourly, @daily, @weekly, @monthly or @yearly)");
    CHECK_STR(parse_error("@daily 0"), "unknown macro \"@daily\" (use @hourly, @daily, @weekly, @monthly or @yearly)");
    CHECK_STR(parse_error("0 0 30 2 *"), "never fires: no chosen month has the chosen day-of-month");
    CHECK_STR(parse_error("0 0 31 4,6,9,11 *"), "never fires: no chosen month has the chosen day-of-month");
}

TEST(next_fire_times) {
    time_t t = utc(2024, 1, 15, 10, 30);  /* a Monday */
    CHECK_STR(next("* * * * *", t), "2024-01-15 10:31 Mon");
    CHECK_STR(next("0 3 * * *", t), "2024-01-16 03:00 Tue");
    CHECK_STR(next("30 10 * * *", t), "2024-01-16 10:30 Tue");  /* strictly after */
    CHECK_STR(next("*/20 * * * *", t), "2024-01-15 10:40 Mon");
    CHECK_STR(next("0 0 * * 0", t), "2024-01-21 00:00 Sun");
    CHECK_STR(next("0 9 * * mon-fri", utc(2024, 1, 19, 9, 0)), "2024-01-22 09:00 Mon");
    CHECK_STR(next("@monthly", t), "2024-02-01 00:00 Thu");
    CHECK_STR(next("@yearly", t), "2025-01-01 00:00 Wed");
    CHECK_STR(next("0 0 31 * *", utc(2024, 1, 31, 0, 0)), "2024-03-31 00:00 Sun");
    CHECK_STR(next("0 12 29 feb *", t), "2024-02-29 12:00 Thu");
    CHECK_STR(next("0 12 29 feb *", utc(2024, 3, 1, 0, 0)), "2028-02-29 12:00 Tue");
    CHECK_STR(next("59 23 31 12 *", utc(2024, 12, 31, 23, 59)), "2025-12-31 23:59 Wed");
    /* seconds are dropped: from 10:30:59 the next minute is 10:31 */
    CHECK_STR(next("* * * * *", t + 59), "2024-01-15 10:31 Mon");
}

TEST(day_fields_follow_vixie_cron) {
    time_t t = utc(2024, 1, 15, 10, 30);
    /* both restricted: the 1st of the month OR a Friday */
    CHECK_STR(next("0 0 1 * fri", t), "2024-01-19 00:00 Fri");
    CHECK_STR(next("0 0 1 * fri", utc(2024, 1, 26, 0, 0)), "2024-02-01 00:00 Thu");
    /* day-of-week is *: only day-of-month counts */
    CHECK_STR(next("0 0 1 * *", t), "2024-02-01 00:00 Thu");
    /* a field starting with * counts as unrestricted, as in Vixie cron: odd days AND Mondays */
    CHECK_STR(next("0 0 */2 * mon", t), "2024-01-29 00:00 Mon");
}

TEST(next_is_none_for_an_impossible_hand_built_expression) {
    weir_cron_t c = {0};
    c.minutes = 1;
    c.hours = 1;
    c.mdays = 1u << 30;
    c.months = 1u << 2;  /* February the 30th */
    c.wdays = 0x7f;
    CHECK(weir_cron_next(&c, utc(2024, 1, 1, 0, 0)) == (time_t)-1);
}

UNIT_MAIN(cron, CASE(parses_fields), CASE(parse_errors_say_what_is_wrong), CASE(next_fire_times),
          CASE(day_fields_follow_vixie_cron), CASE(next_is_none_for_an_impossible_hand_built_expression))
