/* batch.c — group commit (contract in engine/batch.h).
 *
 * One transaction in flight at a time: while it commits, new operations gather, and the
 * next transaction carries all of them. A uv_prepare handle sends what gathered just
 * before the loop would block, so operations added by every callback of one loop turn
 * share a transaction. */
#include "engine/batch.h"
#include "common/error.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

enum {
    MAX_WAITING = 20000, /* operations queued; beyond, callers answer 503 */
    MAX_PER_TX = 2000    /* statements in one transaction */
};

typedef struct op_s {
    struct op_s *next;
    const char *sql;
    int nparams;
    unsigned flags;
    weir_batch_cb cb;
    weir_batch_fill fill; /* lazy parameters, made at send time */
    void *data;
    char *params[]; /* nparams pointers, then the strings, in one allocation */
} op_t;

struct weir_batch_s {
    uv_loop_t *loop;
    weir_db_t *db;
    uv_prepare_t prepare;
    weir_batch_hook hook;
    void *hook_data;
    op_t *head, *tail; /* waiting */
    unsigned waiting, inflight_ops;
    int inflight;      /* transactions in flight: 1 batched, or the solo re-runs of a failed one */
    int closing;
    unsigned long long txs, ops;
};

/* A sent transaction and the operations it carries, in statement order. */
typedef struct {
    weir_batch_t *b;
    op_t **ops;
    int n;
    unsigned long long t0; /* ms, when sent */
} sent_t;

static op_t *op_new(const char *sql, int nparams, const char *const *params, unsigned flags, weir_batch_cb cb,
                    void *data) {
    size_t bytes = sizeof(op_t) + (size_t)nparams * sizeof(char *);
    for (int i = 0; i < nparams && params; i++) bytes += params[i] ? strlen(params[i]) + 1 : 0;
    op_t *o = malloc(bytes);
    if (!o) return NULL;
    o->next = NULL;
    o->sql = sql;
    o->nparams = nparams;
    o->flags = flags;
    o->cb = cb;
    o->fill = NULL;
    o->data = data;
    char *p = (char *)(o->params + nparams);
    for (int i = 0; i < nparams; i++) {
        if (!params || !params[i]) { o->params[i] = NULL; continue; }
        size_t n = strlen(params[i]) + 1;
        memcpy(p, params[i], n);
        o->params[i] = p;
        p += n;
    }
    return o;
}

static void send_ops(weir_batch_t *b, op_t **ops, int n);

static void on_sent(weir_db_tx_t *tx, int status, void *data) {
    sent_t *s = data;
    weir_batch_t *b = s->b;
    if (status == WEIR_EDB && s->n > 1) {
        /* One statement failed and took the others with it: run each alone, so that only the
         * guilty one fails. Their callbacks run when those transactions complete. */
        weir_log_warn("batch: a transaction of %d statements failed (%s: %s); running them one by one", s->n,
                      weir_db_tx_sqlstate(tx), weir_db_tx_error(tx));
        b->inflight--;
        for (int i = 0; i < s->n; i++) {
            op_t **one = malloc(sizeof *one);
            if (!one) { s->ops[i]->cb(tx, i, WEIR_ENOMEM, s->ops[i]->data); free(s->ops[i]); continue; }
            one[0] = s->ops[i];
            b->inflight_ops--;
            send_ops(b, one, 1);
        }
        free(s->ops);
        free(s);
        return;
    }
    weir_log_debug("batch: %d statements, %s in %llu ms", s->n, status ? "failed" : "committed",
                   (unsigned long long)(uv_hrtime() / 1000000 - s->t0));
    if (status == 0) {
        b->txs++;
        b->ops += (unsigned long long)s->n;
    }
    b->inflight--;
    b->inflight_ops -= (unsigned)s->n;
    for (int i = 0; i < s->n; i++) {
        s->ops[i]->cb(tx, i, status, s->ops[i]->data);
        free(s->ops[i]);
    }
    free(s->ops);
    free(s);
}

/* Takes ownership of ops (an array of n). */
static void send_ops(weir_batch_t *b, op_t **ops, int n) {
    sent_t *s = malloc(sizeof *s);
    weir_db_tx_t *tx = s && b->db ? weir_db_tx_new(b->db) : NULL;
    if (!tx) {
        /* Without a transaction object nothing was sent: fail them as unavailable. */
        for (int i = 0; i < n; i++) {
            ops[i]->cb(NULL, i, b->db ? WEIR_ENOMEM : WEIR_EUNAVAIL, ops[i]->data);
            free(ops[i]);
        }
        free(ops);
        free(s);
        return;
    }
    for (int i = 0; i < n; i++) {
        op_t *o = ops[i];
        if (!o->fill) {
            weir_db_tx_add(tx, o->sql, o->nparams, (const char *const *)o->params);
            continue;
        }
        for (int k = 0; k < o->nparams; k++) o->params[k] = NULL;
        if (o->fill(o->data, o->params))
            for (int k = 0; k < o->nparams; k++) { free(o->params[k]); o->params[k] = NULL; }
        weir_db_tx_add(tx, o->sql, o->nparams, (const char *const *)o->params); /* copies them */
        for (int k = 0; k < o->nparams; k++) { free(o->params[k]); o->params[k] = NULL; }
    }
    s->b = b;
    s->ops = ops;
    s->n = n;
    s->t0 = uv_hrtime() / 1000000;
    b->inflight++;
    b->inflight_ops += (unsigned)n;
    weir_db_tx_submit(tx, on_sent, s);
}

static void flush(weir_batch_t *b) {
    if (b->inflight) return;
    int wakes = 0;
    for (op_t *o = b->head; o; o = o->next) wakes |= (o->flags & WEIR_BATCH_WAKES) != 0;
    if (b->hook) b->hook(b, wakes, b->hook_data); /* may add statements, also to an empty batch */
    if (!b->head) return;
    int n = b->waiting < MAX_PER_TX ? (int)b->waiting : MAX_PER_TX;
    op_t **ops = malloc((size_t)n * sizeof *ops);
    if (!ops) return; /* try again next turn */
    for (int i = 0; i < n; i++) {
        ops[i] = b->head;
        b->head = b->head->next;
    }
    if (!b->head) b->tail = NULL;
    b->waiting -= (unsigned)n;
    send_ops(b, ops, n);
}

static void on_prepare(uv_prepare_t *h) { flush(h->data); }

weir_batch_t *weir_batch_new(uv_loop_t *loop, weir_db_t *db, weir_batch_hook hook, void *hook_data) {
    weir_batch_t *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->loop = loop;
    b->db = db;
    b->hook = hook;
    b->hook_data = hook_data;
    uv_prepare_init(loop, &b->prepare);
    b->prepare.data = b;
    uv_prepare_start(&b->prepare, on_prepare);
    return b;
}

static void on_closed(uv_handle_t *h) { free(h->data); }

void weir_batch_free(weir_batch_t *b) {
    if (!b) return;
    b->closing = 1;
    while (b->head) {
        op_t *o = b->head;
        b->head = o->next;
        o->cb(NULL, 0, WEIR_EUNAVAIL, o->data);
        free(o);
    }
    b->tail = NULL;
    b->waiting = 0;
    b->db = NULL;
    uv_close((uv_handle_t *)&b->prepare, on_closed);
}

static void enqueue(weir_batch_t *b, op_t *o) {
    if (b->tail) b->tail->next = o;
    else b->head = o;
    b->tail = o;
    b->waiting++;
}

int weir_batch_add(weir_batch_t *b, const char *sql, int nparams, const char *const *params, unsigned flags,
                   weir_batch_cb cb, void *data) {
    if (b->closing) return WEIR_EUNAVAIL;
    if (b->waiting >= MAX_WAITING) return WEIR_ELIMIT;
    op_t *o = op_new(sql, nparams, params, flags, cb, data);
    if (!o) return WEIR_ENOMEM;
    enqueue(b, o);
    return 0;
}

int weir_batch_add_lazy(weir_batch_t *b, const char *sql, int nparams, weir_batch_fill fill, unsigned flags,
                        weir_batch_cb cb, void *data) {
    if (b->closing) return WEIR_EUNAVAIL;
    if (b->waiting >= MAX_WAITING) return WEIR_ELIMIT;
    op_t *o = op_new(sql, nparams, NULL, flags, cb, data);
    if (!o) return WEIR_ENOMEM;
    o->fill = fill;
    enqueue(b, o);
    return 0;
}

unsigned weir_batch_pending(const weir_batch_t *b) { return b->waiting + b->inflight_ops; }

void weir_batch_stats(const weir_batch_t *b, unsigned long long *txs, unsigned long long *ops) {
    *txs = b->txs;
    *ops = b->ops;
}
