/* bench_compile.c — how long weir_dsl_compile takes on a 10,000-task pipeline (target: under
 * 200 ms), in two shapes: a script that generates the tasks in a loop, and the same pipeline
 * written out task by task (about 2 MB of source, so the parser is measured too). The DAG is
 * 100 layers of 100 tasks; each task reads two outputs of the layer before (implied
 * dependencies) and a parameter. Prints the median and the spread of several runs.
 *
 * Build and run from the repository root, after `make`:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude $(pkg-config --cflags lua5.4 jansson) \
 *      bench/bench_compile.c build/libweir.a $(pkg-config --libs lua5.4 jansson libuv libpq libcurl zlib) \
 *      -lhttp_parser -lm -o build/bench_compile && build/bench_compile
 * (bench/compile.sh does exactly that.) Not a unit test: it asserts only that compiles succeed. */
#include "common/util.h"
#include "dsl/dsl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAYERS 100
#define WIDTH 100
#define RUNS 7

static const char *const generated =
    "pipeline \"bench\" { params = { lr = param.number(0.1) }, defaults = { retries = 2, timeout = \"1h\" } }\n"
    "local prev = {}\n"
    "for l = 1, %d do\n"
    "  local layer = {}\n"
    "  for w = 1, %d do\n"
    "    local a, b = prev[w], prev[w %% %d + 1]\n"
    "    layer[w] = task(\"t\" .. l .. \"-\" .. w) {\n"
    "      exec = { \"python3\", \"step.py\", \"--lr=\" .. params.lr },\n"
    "      outputs = { \"out\" },\n"
    "      with = a and { x = a.outputs.out, y = b.outputs.out } or {},\n"
    "    }\n"
    "  end\n"
    "  prev = layer\n"
    "end\n";

static char *written_out(size_t *len) {
    weir_buf_t b;
    weir_buf_init(&b, (size_t)64 << 20);
    weir_buf_printf(&b, "pipeline \"bench\" { params = { lr = param.number(0.1) }, defaults = { retries = 2, timeout = \"1h\" } }\n");
    for (int l = 1; l <= LAYERS; l++) {
        for (int w = 1; w <= WIDTH; w++) {
            weir_buf_printf(&b, "task \"t%d-%d\" {\n  exec = { \"python3\", \"step.py\", \"--lr=${params.lr}\" },\n"
                                "  outputs = { \"out\" },\n", l, w);
            if (l > 1)
                weir_buf_printf(&b, "  with = { x = \"${tasks.t%d-%d.outputs.out}\", y = \"${tasks.t%d-%d.outputs.out}\" },\n",
                                l - 1, w, l - 1, w % WIDTH + 1);
            weir_buf_printf(&b, "}\n");
        }
    }
    *len = b.len;
    return b.data;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int bench(const char *what, const char *src, size_t len) {
    uint64_t us[RUNS];
    size_t plan_len = 0;
    char version[65] = "";
    for (int i = 0; i < RUNS; i++) {
        weir_dsl_result_t r;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = weir_dsl_compile("bench.lua", src, len, NULL, &r);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (rc) {
            fprintf(stderr, "bench_compile: %s: compile failed (%d):\n%s", what, rc, r.errors ? r.errors : "");
            weir_dsl_result_free(&r);
            return 1;
        }
        if (i && strcmp(version, r.version)) {
            fprintf(stderr, "bench_compile: %s: the version changed between runs\n", what);
            return 1;
        }
        memcpy(version, r.version, sizeof version);
        plan_len = r.plan_len;
        us[i] = (uint64_t)((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000);
        weir_dsl_result_free(&r);
    }
    qsort(us, RUNS, sizeof us[0], cmp_u64);
    printf("compile %-12s %d tasks, %7zu bytes of source, %8zu bytes of plan: median %6.1f ms (min %.1f, max %.1f, %d runs)%s\n",
           what, LAYERS * WIDTH, len, plan_len, us[RUNS / 2] / 1000.0, us[0] / 1000.0, us[RUNS - 1] / 1000.0, RUNS,
           us[RUNS / 2] < 200000 ? "" : "  ABOVE the 200 ms target");
    return 0;
}

int main(void) {
    char src[2048];
    snprintf(src, sizeof src, generated, LAYERS, WIDTH, WIDTH);
    size_t len;
    char *big = written_out(&len);
    int rc = bench("generated", src, strlen(src));
    rc |= big ? bench("written-out", big, len) : 1;
    free(big);
    return rc;
}
