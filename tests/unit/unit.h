/* unit.h — the unit-test runner: each case runs in its own child process with
 * a timeout, so a crash or a hang fails that case and not the suite.
 *
 * A test file defines cases with TEST(name) { ... }, lists them with
 * UNIT_MAIN(case, case, ...) and checks with CHECK(cond) / CHECK_STR(a, b).
 * Output: one "ok"/"FAIL" line per case, then "N passed, N failed". */
#ifndef WEIR_TESTS_UNIT_H
#define WEIR_TESTS_UNIT_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name; void (*fn)(void); } unit_case_t;

#define TEST(name) static void name(void)
#define CASE(name) {#name, name}

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
    fprintf(stderr, "    %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); exit(1); } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); if (!_a || !_b || strcmp(_a, _b)) { \
    fprintf(stderr, "    %s:%d: %s\n      got:      %s\n      expected: %s\n", __FILE__, __LINE__, #a, \
            _a ? _a : "(null)", _b ? _b : "(null)"); exit(1); } } while (0)
#define CHECK_CONTAINS(hay, needle) do { const char *_h = (hay), *_n = (needle); if (!_h || !strstr(_h, _n)) { \
    fprintf(stderr, "    %s:%d: %s does not contain \"%s\"\n      got: %s\n", __FILE__, __LINE__, #hay, _n, \
            _h ? _h : "(null)"); exit(1); } } while (0)

static int unit_run(const char *suite, const unit_case_t *cases, size_t n) {
    unsigned timeout = getenv("UNIT_TIMEOUT") ? (unsigned)atoi(getenv("UNIT_TIMEOUT")) : 30;
    const char *only = getenv("UNIT_ONLY");
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name)) continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(timeout);
            cases[i].fn();
            fflush(NULL);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            printf("ok   %s.%s\n", suite, cases[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %s.%s (%s)\n", suite, cases[i].name,
                       WTERMSIG(st) == SIGALRM ? "timed out" : strsignal(WTERMSIG(st)));
            else
                printf("FAIL %s.%s (exit %d)\n", suite, cases[i].name, WEXITSTATUS(st));
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(suite, ...) \
    int main(void) { \
        static const unit_case_t cases[] = {__VA_ARGS__}; \
        return unit_run(#suite, cases, sizeof cases / sizeof cases[0]); \
    }

#endif
