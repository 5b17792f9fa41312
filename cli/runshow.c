/* runshow.c — a run for people: `weir run show` (a header and the DAG as a tree, like
 * `argo get`) and `weir run watch` (the same, redrawn until the run ends). It draws only what
 * GET /v1/runs/ID answers; it is not a second copy of the scheduler's state machine.
 *
 * The tree: tasks in plan order; a task is drawn under its first upstream task (the plan sorts
 * `upstream`), so every task appears exactly once; a task with several upstream tasks notes them
 * all, "(after a, b)". Indentation stops growing at MAX_INDENT levels (a long chain would
 * otherwise run off the screen); deeper tasks are drawn at that level with their "(after ...)".
 *
 * Fan-outs: a foreach group (the API's `group`) with more than GROUP_COLLAPSE_OVER members is
 * drawn as one line, "train-[1..100]  98 succeeded, 2 failed", placed where its first member
 * would be; its members that need a person (failed, rejected, waiting, retrying) are listed under
 * it, at most ATTENTION_SHOWN of them. Everything is in `-o json`. Smaller groups are drawn task
 * by task. Tasks after the group hang under the group's line. */
#include "cli/runs.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <time.h>
#include <unistd.h>

#define GROUP_COLLAPSE_OVER 10
#define ATTENTION_SHOWN 10
#define MAX_INDENT 16
#define AFTER_SHOWN 6      /* names in an "(after ...)" note before "+N more" */
#define MESSAGE_MAX 100    /* characters of an error or decision in the table; all of it in -o json */

typedef struct {
    int task;                     /* its task, or its group's first member */
    const char *group;            /* a collapsed foreach group, else NULL */
    int first_member, nmembers;   /* members chain through tree_t.next_member */
    long lo, hi;                  /* the range of NAME-k suffixes of a collapsed group */
    int numbered;                 /* every member is named GROUP-k */
    int parent, first_child, last_child, next_sibling;
    int drawn;
} node_t;

typedef struct {
    const json_t *run;
    json_t *tasks;
    int n;
    json_t *index;    /* task name → its index */
    int *node_of;     /* task index → node */
    int *next_member; /* task index → the next member of its collapsed group, -1 */
    node_t *nodes;
    int nnodes;
    cli_table_t table;
} tree_t;

static const char *tstr(const json_t *t, const char *key) { return json_string_value(json_object_get(t, key)); }

static const char *symbol(const char *st) {
    if (!st) return "?";
    if (!strcmp(st, "succeeded") || !strcmp(st, "blessed")) return "✔";
    if (!strcmp(st, "failed") || !strcmp(st, "rejected")) return "✖";
    if (!strcmp(st, "running")) return "●";
    if (!strcmp(st, "retrying")) return "↻";
    if (!strcmp(st, "waiting")) return "◷";
    if (!strcmp(st, "skipped") || !strcmp(st, "cancelled")) return "⊘";
    return "○"; /* pending, queued */
}

static int needs_attention(const char *st) {
    return st && (!strcmp(st, "failed") || !strcmp(st, "rejected") || !strcmp(st, "waiting") ||
                  !strcmp(st, "retrying"));
}

static int task_index(const tree_t *tr, const char *name) {
    json_t *i = name ? json_object_get(tr->index, name) : NULL;
    return i ? (int)json_integer_value(i) : -1;
}

/* Builds the nodes (one per task, one per collapsed group) and hangs each under its parent. */
static int tree_build(tree_t *tr, const json_t *run) {
    memset(tr, 0, sizeof *tr);
    tr->run = run;
    tr->tasks = json_object_get(run, "tasks");
    tr->n = (int)json_array_size(tr->tasks);
    tr->index = json_object();
    json_t *group_size = json_object(), *group_node = json_object();
    tr->node_of = malloc(sizeof(int) * (size_t)(tr->n + 1));
    tr->next_member = malloc(sizeof(int) * (size_t)(tr->n + 1));
    tr->nodes = calloc((size_t)tr->n + 1, sizeof *tr->nodes);
    if (!tr->index || !group_size || !group_node || !tr->node_of || !tr->next_member || !tr->nodes) {
        json_decref(group_size);
        json_decref(group_node);
        return -1;
    }
    for (int i = 0; i < tr->n; i++) {
        json_t *t = json_array_get(tr->tasks, (size_t)i);
        const char *name = tstr(t, "name"), *g = tstr(t, "group");
        if (name) json_object_set_new(tr->index, name, json_integer(i));
        if (g && *g) json_object_set_new(group_size, g, json_integer(json_integer_value(json_object_get(group_size, g)) + 1));
    }
    for (int i = 0; i < tr->n; i++) {
        json_t *t = json_array_get(tr->tasks, (size_t)i);
        const char *g = tstr(t, "group"), *name = tstr(t, "name") ?: "";
        tr->next_member[i] = -1;
        int collapse = g && *g && json_integer_value(json_object_get(group_size, g)) > GROUP_COLLAPSE_OVER;
        json_t *existing = collapse ? json_object_get(group_node, g) : NULL;
        node_t *nd;
        if (existing) {
            tr->node_of[i] = (int)json_integer_value(existing);
            nd = &tr->nodes[tr->node_of[i]];
            int m = nd->first_member;
            while (tr->next_member[m] >= 0) m = tr->next_member[m];
            tr->next_member[m] = i; /* plan order; groups are small enough for this walk */
            nd->nmembers++;
        } else {
            tr->node_of[i] = tr->nnodes;
            nd = &tr->nodes[tr->nnodes++];
            *nd = (node_t){.task = i, .group = collapse ? g : NULL, .first_member = i, .nmembers = 1,
                           .lo = -1, .hi = -1, .numbered = 1, .parent = -1, .first_child = -1,
                           .last_child = -1, .next_sibling = -1};
            if (collapse) json_object_set_new(group_node, g, json_integer(tr->node_of[i]));
        }
        if (nd->group) {
            size_t gl = strlen(g);
            char *end;
            long k = !strncmp(name, g, gl) && name[gl] == '-' && name[gl + 1] ? strtol(name + gl + 1, &end, 10) : -1;
            if (k < 0 || *end) nd->numbered = 0;
            else {
                if (nd->lo < 0 || k < nd->lo) nd->lo = k;
                if (k > nd->hi) nd->hi = k;
            }
        }
    }
    json_decref(group_size);
    json_decref(group_node);
    /* parents: the first upstream task that is not in the node itself */
    for (int k = 0; k < tr->nnodes; k++) {
        node_t *nd = &tr->nodes[k];
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(json_array_get(tr->tasks, (size_t)nd->task), "upstream"), i, u) {
            int ti = task_index(tr, json_string_value(u));
            if (ti < 0 || tr->node_of[ti] == k) continue;
            nd->parent = tr->node_of[ti];
            break;
        }
        if (nd->parent < 0) continue;
        node_t *p = &tr->nodes[nd->parent];
        if (p->last_child < 0) p->first_child = k;
        else tr->nodes[p->last_child].next_sibling = k;
        p->last_child = k;
    }
    return 0;
}

static void tree_free(tree_t *tr) {
    json_decref(tr->index);
    free(tr->node_of);
    free(tr->next_member);
    free(tr->nodes);
    cli_table_free(&tr->table);
}

/* The name a node is drawn with: a task's name, "train-[1..100]" or "group-*" for a group. */
static const char *node_label(const tree_t *tr, const node_t *nd, char *buf, size_t size) {
    if (!nd->group) return tstr(json_array_get(tr->tasks, (size_t)nd->task), "name") ?: "?";
    if (nd->numbered) snprintf(buf, size, "%s-[%ld..%ld]", nd->group, nd->lo, nd->hi);
    else snprintf(buf, size, "%s-* (%d tasks)", nd->group, nd->nmembers);
    return buf;
}

/* The first line of text, cut to MESSAGE_MAX characters. */
static void one_line(const char *s, char *buf, size_t size) {
    size_t n = strcspn(s, "\r\n"), chars = 0, i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && ++chars > MESSAGE_MAX) break;
    }
    snprintf(buf, size, "%.*s%s", (int)i, s, i < strlen(s) ? "…" : "");
}

/* A gate's, approval's or deploy's decision for people. The scheduler writes {"blessed", "summary",
 * ...} for gates, {"approved", "by", "comment", "at"} for approvals and {"model", "version", "alias",
 * "moved", "reason", ...} for deploys; anything else is shown as JSON. */
static void decision_text(const json_t *d, char *buf, size_t size) {
    buf[0] = '\0';
    if (json_is_string(d)) { one_line(json_string_value(d), buf, size); return; }
    if (!json_is_object(d) || !json_object_size(d)) return;
    char text[1024] = "";
    size_t n = 0;
    json_t *moved = json_object_get(d, "moved");
    if (json_is_boolean(moved) && tstr(d, "model")) {
        /* a deploy task's registration (docs/registry.md): the version, and whether its alias moved */
        char ver[32];
        const char *v = cli_field(d, "version", ver, sizeof ver) ?: "?", *alias = tstr(d, "alias") ?: "?";
        if (json_is_true(moved))
            snprintf(text, sizeof text, "registered %s v%s, %s → v%s: %s", tstr(d, "model"), v, alias, v,
                     tstr(d, "reason") ?: "");
        else
            snprintf(text, sizeof text, "registered %s v%s, %s not moved: %s", tstr(d, "model"), v, alias,
                     tstr(d, "reason") ?: "");
        one_line(text, buf, size);
        return;
    }
    json_t *blessed = json_object_get(d, "blessed"), *approved = json_object_get(d, "approved");
    const char *verdict = json_is_boolean(blessed) ? (json_is_true(blessed) ? "blessed" : "not blessed")
                        : json_is_boolean(approved) ? (json_is_true(approved) ? "approved" : "rejected")
                        : tstr(d, "decision") ?: tstr(d, "outcome");
    if (verdict) n += (size_t)snprintf(text, sizeof text, "%s", verdict);
    const char *by = tstr(d, "by") ?: tstr(d, "actor");
    if (by && *by && n < sizeof text) n += (size_t)snprintf(text + n, sizeof text - n, "%sby %s", n ? " " : "", by);
    static const char *const keys[] = {"summary", "reason", "message", "comment"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && n < sizeof text; i++) {
        const char *v = tstr(d, keys[i]);
        if (v && *v) n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", n ? ": " : "", v);
    }
    if (!n) {
        char *dump = json_dumps(d, JSON_COMPACT);
        snprintf(text, sizeof text, "%s", dump ? dump : "");
        free(dump);
    }
    one_line(text, buf, size);
}

/* " (after a, b)" naming a node's upstream tasks, a collapsed group once; "" when it has one
 * upstream and is drawn right under it. */
static void after_note(const tree_t *tr, int k, int forced, char *buf, size_t size) {
    const node_t *nd = &tr->nodes[k];
    json_t *seen = json_object();
    weir_buf_t b;
    weir_buf_init(&b, size);
    int count = 0;
    for (int m = nd->first_member; m >= 0; m = nd->group ? tr->next_member[m] : -1) {
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(json_array_get(tr->tasks, (size_t)m), "upstream"), i, u) {
            const char *name = json_string_value(u);
            int ti = task_index(tr, name);
            if (!name || (ti >= 0 && tr->node_of[ti] == k)) continue;
            char lb[128];
            const char *label = ti >= 0 ? node_label(tr, &tr->nodes[tr->node_of[ti]], lb, sizeof lb) : name;
            if (json_object_get(seen, label)) continue;
            json_object_set_new(seen, label, json_true());
            if (++count <= AFTER_SHOWN) weir_buf_printf(&b, "%s%s", count > 1 ? ", " : "", label);
        }
    }
    buf[0] = '\0';
    if (count > 1 || (forced && count))
        snprintf(buf, size, "(after %s%s%.0d%s)", b.data ? b.data : "", count > AFTER_SHOWN ? ", +" : "",
                 count > AFTER_SHOWN ? count - AFTER_SHOWN : 0, count > AFTER_SHOWN ? " more" : "");
    weir_buf_free(&b);
    json_decref(seen);
}

static void join_message(char *out, size_t size, const char *a, const char *b) {
    snprintf(out, size, "%s%s%s", a, *a && *b ? "  " : "", b);
}

/* One task's row. */
static void task_row(tree_t *tr, int ti, const char *prefix, const char *after) {
    json_t *t = json_array_get(tr->tasks, (size_t)ti);
    const char *st = tstr(t, "state");
    char cell[1024], att[48] = "", wb[64], dur[32], msg[512] = "", line[1024];
    snprintf(cell, sizeof cell, "%s%s %s", prefix, symbol(st), tstr(t, "name") ?: "?");
    long long a = json_integer_value(json_object_get(t, "attempt"));
    long long max = json_integer_value(json_object_get(t, "max_attempts"));
    /* "2/3": the second of three tries. A lost attempt (its worker went away) and an operator's
     * retry do not use the budget, but attempt numbers keep counting (they are fencing tokens):
     * past the budget the number stands alone rather than read "4/3". */
    if (a > 0 && max > 0 && a <= max) snprintf(att, sizeof att, "%lld/%lld", a, max);
    else if (a > 0) snprintf(att, sizeof att, "%lld", a);
    /* a decision says more than the error the scheduler derives from it ("rejected by X") */
    decision_text(json_object_get(t, "decision"), msg, sizeof msg);
    const char *err = tstr(t, "error");
    if (!msg[0] && err && *err) one_line(err, msg, sizeof msg);
    json_t *prog = json_object_get(t, "progress");
    if (!msg[0] && json_is_object(prog)) {
        const char *note = tstr(prog, "note");
        snprintf(msg, sizeof msg, "%.0f%%%s%s", 100 * json_number_value(json_object_get(prog, "fraction")),
                 note && *note ? " " : "", note ? note : "");
    }
    if (!msg[0] && st && !strcmp(st, "waiting"))
        snprintf(msg, sizeof msg, "weir approve|reject %lld %s",
                 (long long)json_integer_value(json_object_get(tr->run, "id")), tstr(t, "name") ?: "?");
    join_message(line, sizeof line, msg, after);
    int64_t ms = cli_elapsed_ms(t);
    cli_table_row(&tr->table, cell, st, att, cli_field(t, "worker", wb, sizeof wb),
                  ms >= 0 ? cli_duration(ms, dur, sizeof dur) : NULL, line);
}

/* A collapsed group's row: how many members are in each state, the longest member's time. */
static void group_row(tree_t *tr, const node_t *nd, const char *prefix, const char *after) {
    static const char *const order[] = {"running", "retrying", "waiting", "queued", "pending", "succeeded",
                                        "blessed", "failed", "rejected", "skipped", "cancelled"};
    enum { NSTATES = sizeof order / sizeof order[0] };
    int counts[NSTATES + 1] = {0};
    int64_t longest = -1;
    for (int m = nd->first_member; m >= 0; m = tr->next_member[m]) {
        json_t *t = json_array_get(tr->tasks, (size_t)m);
        const char *st = tstr(t, "state") ?: "";
        int s = 0;
        while (s < NSTATES && strcmp(order[s], st)) s++;
        counts[s]++;
        int64_t ms = cli_elapsed_ms(t);
        if (ms > longest) longest = ms;
    }
    /* the group's symbol: the most urgent of its members' states */
    const char *sym = counts[7] + counts[8] ? "✖" : counts[0] ? "●" : counts[1] ? "↻" : counts[2] ? "◷"
                    : counts[3] + counts[4] + counts[NSTATES] ? "○" : counts[5] + counts[6] ? "✔" : "⊘";
    char label[160], cell[1024], summary[512] = "", dur[32];
    size_t n = 0;
    for (int s = 0; s <= NSTATES; s++)
        if (counts[s] && n < sizeof summary)
            n += (size_t)snprintf(summary + n, sizeof summary - n, "%s%d %s", n ? ", " : "", counts[s],
                                  s < NSTATES ? order[s] : "other");
    snprintf(cell, sizeof cell, "%s%s %s", prefix, sym, node_label(tr, nd, label, sizeof label));
    cli_table_row(&tr->table, cell, summary, NULL, NULL, longest >= 0 ? cli_duration(longest, dur, sizeof dur) : NULL,
                  after);
}

static void draw(tree_t *tr, int k, const char *prefix, int depth, int root, int last) {
    node_t *nd = &tr->nodes[k];
    nd->drawn = 1;
    char here[512], below[512], after[512];
    snprintf(here, sizeof here, "%s%s", prefix, root ? "" : last ? "└─" : "├─");
    int capped = depth > MAX_INDENT;
    /* past the cap, children keep this level: the "(after ...)" note says whose they are */
    snprintf(below, sizeof below, "%s%s", prefix, root || capped ? "" : last ? "  " : "│ ");
    after_note(tr, k, capped || (root && nd->parent >= 0), after, sizeof after);
    if (!nd->group) task_row(tr, nd->task, here, after);
    else {
        group_row(tr, nd, here, after);
        int shown = 0, more = 0;
        for (int m = nd->first_member; m >= 0; m = tr->next_member[m])
            if (needs_attention(tstr(json_array_get(tr->tasks, (size_t)m), "state"))) more++;
        for (int m = nd->first_member; m >= 0 && shown < ATTENTION_SHOWN; m = tr->next_member[m]) {
            if (!needs_attention(tstr(json_array_get(tr->tasks, (size_t)m), "state"))) continue;
            shown++;
            int lastrow = nd->first_child < 0 && shown == more;
            char p[600];
            snprintf(p, sizeof p, "%s%s", below, lastrow ? "└─" : "├─");
            task_row(tr, m, p, "");
        }
        if (more > shown) {
            char p[600], cell[700];
            snprintf(p, sizeof p, "%s%s", below, nd->first_child < 0 ? "└─" : "├─");
            snprintf(cell, sizeof cell, "%s… %d more", p, more - shown);
            cli_table_row(&tr->table, cell, NULL, NULL, NULL, NULL, "see -o json");
        }
    }
    for (int c = nd->first_child; c >= 0; c = tr->nodes[c].next_sibling) {
        if (tr->nodes[c].drawn) continue;
        int lastc = 1;
        for (int s = tr->nodes[c].next_sibling; s >= 0; s = tr->nodes[s].next_sibling)
            if (!tr->nodes[s].drawn) { lastc = 0; break; }
        draw(tr, c, below, depth + 1, 0, lastc);
    }
}

static void header_line(FILE *out, const char *label, const char *value) {
    if (value && *value) fprintf(out, "%-10s%s\n", label, value);
}

void cli_run_render(FILE *out, const json_t *run) {
    char b1[64], b2[64], line[1024];
    snprintf(line, sizeof line, "%s", cli_field(run, "id", b1, sizeof b1) ?: "?");
    header_line(out, "run", line);
    const char *ver = tstr(run, "version");
    snprintf(line, sizeof line, "%s, version %s%s%.12s%s", tstr(run, "pipeline") ?: "?",
             cli_field(run, "seq", b1, sizeof b1) ?: "?", ver ? " (" : "", ver ? ver : "", ver ? ")" : "");
    header_line(out, "pipeline", line);
    header_line(out, "state", tstr(run, "state"));
    /* what started it: "manual by ops", "signal 12: drift for model:churn, value 0.6",
     * "schedule for 2026-11-24 03:00:00+00" */
    const char *by = tstr(run, "created_by"), *trigger = cli_field(run, "trigger", b1, sizeof b1) ?: "-";
    json_t *sig = json_object_get(run, "signal");
    if (json_is_object(sig)) {
        char value[64] = "";
        if (json_is_number(json_object_get(sig, "value")))
            snprintf(value, sizeof value, ", value %g", json_number_value(json_object_get(sig, "value")));
        snprintf(line, sizeof line, "signal %lld: %s%s%s%s", (long long)json_integer_value(json_object_get(sig, "id")),
                 tstr(sig, "kind") ?: "?", *(tstr(sig, "subject") ?: "") ? " for " : "", tstr(sig, "subject") ?: "", value);
    } else if (tstr(run, "scheduled_for")) {
        snprintf(line, sizeof line, "%s for %s", trigger, tstr(run, "scheduled_for"));
    } else {
        snprintf(line, sizeof line, "%s%s%s", trigger, by && *by ? " by " : "", by && *by ? by : "");
    }
    header_line(out, "trigger", line);
    header_line(out, "reason", tstr(run, "reason"));
    json_t *params = json_object_get(run, "params");
    if (json_object_size(params)) {
        weir_buf_t p;
        weir_buf_init(&p, 4096);
        const char *k;
        json_t *v;
        json_object_foreach(params, k, v) {
            char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            weir_buf_printf(&p, "%s%s=%s", p.len ? " " : "", k, s ? s : json_string_value(v));
            free(s);
        }
        header_line(out, "params", p.data);
        weir_buf_free(&p);
    }
    header_line(out, "created", cli_time(tstr(run, "created_at"), b1, sizeof b1));
    if (tstr(run, "started_at")) header_line(out, "started", cli_time(tstr(run, "started_at"), b1, sizeof b1));
    if (tstr(run, "finished_at")) header_line(out, "finished", cli_time(tstr(run, "finished_at"), b1, sizeof b1));
    int64_t ms = cli_elapsed_ms(run);
    if (ms >= 0) header_line(out, "duration", cli_duration(ms, b1, sizeof b1));
    long long failed = json_integer_value(json_object_get(run, "tasks_failed"));
    snprintf(line, sizeof line, "%lld/%lld done%s%s", (long long)json_integer_value(json_object_get(run, "tasks_done")),
             (long long)json_integer_value(json_object_get(run, "tasks_total")), failed ? ", " : "",
             failed ? (snprintf(b2, sizeof b2, "%lld failed", failed), b2) : "");
    header_line(out, "tasks", line);

    tree_t tr;
    if (tree_build(&tr, run)) {
        fprintf(out, "\n(out of memory drawing the tasks)\n");
        tree_free(&tr);
        return;
    }
    if (!tr.n) { tree_free(&tr); return; }
    fputc('\n', out);
    cli_table_init(&tr.table, 6);
    cli_table_row(&tr.table, "TASK", "STATE", "ATTEMPT", "WORKER", "DURATION", "MESSAGE");
    for (int k = 0; k < tr.nnodes; k++)
        if (tr.nodes[k].parent < 0) draw(&tr, k, "", 0, 1, 1);
    /* only a cycle through a collapsed group leaves nodes unreached from the roots: draw them as roots */
    for (int k = 0; k < tr.nnodes; k++)
        if (!tr.nodes[k].drawn) draw(&tr, k, "", 0, 1, 1);
    cli_table_print(&tr.table, out);
    tree_free(&tr);
}

char *cli_run_signature(const json_t *run) {
    weir_buf_t b;
    weir_buf_init(&b, (size_t)64 << 20);
    char n1[32], n2[64];
    weir_buf_printf(&b, "%s|%s\n", tstr(run, "state") ?: "", tstr(run, "reason") ?: "");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(run, "tasks"), i, t) {
        char *d = json_dumps(json_object_get(t, "decision"), JSON_COMPACT | JSON_ENCODE_ANY);
        weir_buf_printf(&b, "%s|%s|%s|%s|%s|%s\n", tstr(t, "name") ?: "", tstr(t, "state") ?: "",
                        cli_field(t, "attempt", n1, sizeof n1) ?: "", cli_field(t, "worker", n2, sizeof n2) ?: "",
                        tstr(t, "error") ?: "", d ? d : "");
        free(d);
    }
    if (!b.data) weir_buf_append(&b, "", 0);
    return b.data;
}

/* ---- weir run show | watch ---------------------------------------------------------------- */

/* Parses `run show|watch RUN [flags]`; the run's id, or -1 with *rc set. */
static int64_t show_flags(int argc, char **argv, const char *verb, const char *usage, weir_config_t *cfg, int *json,
                          int *rc) {
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {0, 0, 0, 0}};
    optind = 1;
    if (cli_next_flag(argc, argv, "o:h", opts, usage, cfg, json, rc) != -1) return -1; /* only common flags */
    if (optind != argc - 1) {
        fprintf(stderr, "weir run %s: give one run\n%s", verb, usage);
        *rc = WEIR_EXIT_USAGE;
        return -1;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "run %s", verb);
    int64_t id = cli_run_id(cmd, argv[optind]);
    if (id < 0) { *rc = WEIR_EXIT_USAGE; return -1; }
    weir_config_load(cfg);
    return id;
}

int cli_run_show(int argc, char **argv) {
    const char *usage = "usage: weir run show RUN [-o json]\n\n"
                        "Shows a run: its pipeline and version, state, trigger and times, then its tasks\n"
                        "as a tree (each under its first upstream task) with state, attempt, worker,\n"
                        "duration, and the gate decision or error. Symbols: ✔ succeeded/blessed,\n"
                        "✖ failed/rejected, ● running, ↻ retrying, ◷ waiting for approval, ○ pending/queued,\n"
                        "⊘ skipped/cancelled. Fan-outs of more than 10 tasks are drawn as one line.\n\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    int64_t id = show_flags(argc, argv, "show", usage, &cfg, &json, &rc);
    if (id < 0) return rc;
    weir_response_t res;
    if ((rc = cli_get_run(&cfg, id, &res))) { weir_response_free(&res); return rc; }
    if (json) cli_print_json(res.json);
    else cli_run_render(stdout, res.json);
    weir_response_free(&res);
    return 0;
}

int cli_run_watch(int argc, char **argv) {
    const char *usage = "usage: weir run watch RUN [-o json]\n\n"
                        "Shows the run (as `weir run show`) and redraws it every 0.5 s until it ends.\n"
                        "On a terminal the screen is redrawn; otherwise the run is printed again only\n"
                        "when something changed (with -o json, one line of JSON each time).\n"
                        "Exits 0 when the run succeeded, 1 when it failed or was cancelled.\n\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    int64_t id = show_flags(argc, argv, "watch", usage, &cfg, &json, &rc);
    if (id < 0) return rc;
    int tty = !json && isatty(STDOUT_FILENO);
    char *prev = NULL;
    int64_t since = -1;
    for (;;) {
        weir_response_t res;
        rc = cli_poll_run(&cfg, id, &res, &since);
        if (rc == CLI_RETRY) {
            if (tty) fprintf(stderr, "\rweir: the scheduler does not answer; retrying…");
            cli_sleep_ms(1000);
            continue;
        }
        if (rc) break;
        const char *state = json_string_value(json_object_get(res.json, "state"));
        int ended = cli_run_ended(state), succeeded = state && !strcmp(state, "succeeded");
        char *sig = tty ? NULL : cli_run_signature(res.json);
        if (tty) {
            /* draw the frame off screen first, then replace the screen in one write: no flicker */
            char *frame = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&frame, &len);
            if (f) {
                char when[32];
                time_t now = time(NULL);
                struct tm tm;
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
                fprintf(f, "\033[H\033[2J");
                fprintf(f, "weir run watch %lld  (every 0.5 s; Ctrl-C stops watching, not the run)   %s\n\n",
                        (long long)id, when);
                cli_run_render(f, res.json);
                fclose(f);
                fwrite(frame, 1, len, stdout);
                fflush(stdout);
                free(frame);
            }
        } else if (!prev || !sig || strcmp(prev, sig)) {
            if (json) {
                char *s = json_dumps(res.json, JSON_COMPACT);
                printf("%s\n", s ? s : "null");
                free(s);
            } else {
                if (prev) printf("\n");
                cli_run_render(stdout, res.json);
            }
            fflush(stdout);
        }
        if (sig) { free(prev); prev = sig; }
        weir_response_free(&res);
        if (ended) { rc = succeeded ? WEIR_EXIT_OK : WEIR_EXIT_FAIL; break; }
        cli_sleep_ms(CLI_WATCH_POLL_MS);
    }
    free(prev);
    return rc;
}
