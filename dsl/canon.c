/* canon.c — see canon.h. */
#include "dsl/canon.h"
#include "common/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANON_MAX_DEPTH 64

typedef struct {
    const char *key;
    size_t len;
    const json_t *value;
} member_t;

static int cmp_members(const void *pa, const void *pb) {
    const member_t *a = pa, *b = pb;
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The text is written here, then appended to the caller's buffer in one go: per-token calls
 * into weir_buf_append were most of the time of a 10,000-task plan. */
typedef struct {
    char *data;
    size_t len, cap, max;
    int rc;
} out_t;

static int grow(out_t *o, size_t need) {
    if (o->rc) return -1;
    if (need > o->max) { o->rc = WEIR_ELIMIT; return -1; }
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(o->data, cap);
    if (!p) { o->rc = WEIR_ENOMEM; return -1; }
    o->data = p;
    o->cap = cap;
    return 0;
}

#define RESERVE(o, n) ((o)->len + (n) <= (o)->cap || grow((o), (o)->len + (n)) == 0)

static void put(out_t *o, const char *s, size_t n) {
    if (!RESERVE(o, n)) return;
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

static void put_string(out_t *o, const char *s, size_t n) {
    if (!RESERVE(o, n + 2)) return;
    char *w = o->data + o->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        o->len = (size_t)(w - o->data);
        if (!RESERVE(o, (n - i) + 8)) return;  /* an escape takes at most 6 bytes */
        w = o->data + o->len;
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: w += snprintf(w, 6, "u%04x", c);
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->data);
}

static void put_real(out_t *o, double d) {
    if (!isfinite(d)) { o->rc = o->rc ? o->rc : WEIR_EINVAL; return; }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf - 2, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");  /* stays a real when read back */
    put(o, buf, strlen(buf));
}

static void put_integer(out_t *o, json_int_t v) {
    char buf[24], *p = buf + sizeof buf;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) *--p = '-';
    put(o, p, (size_t)(buf + sizeof buf - p));
}

static void put_newline(out_t *o, int indent, int depth) {
    if (!indent || !RESERVE(o, 1 + (size_t)(indent * depth))) return;
    o->data[o->len++] = '\n';
    memset(o->data + o->len, ' ', (size_t)(indent * depth));
    o->len += (size_t)(indent * depth);
}

static void put_value(out_t *o, const json_t *v, int indent, int depth) {
    if (o->rc) return;
    if (depth > CANON_MAX_DEPTH) { o->rc = WEIR_EINVAL; return; }
    switch (json_typeof(v)) {
    case JSON_NULL: put(o, "null", 4); return;
    case JSON_TRUE: put(o, "true", 4); return;
    case JSON_FALSE: put(o, "false", 5); return;
    case JSON_INTEGER: put_integer(o, json_integer_value(v)); return;
    case JSON_REAL: put_real(o, json_real_value(v)); return;
    case JSON_STRING: put_string(o, json_string_value(v), json_string_length(v)); return;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (!n) { put(o, "[]", 2); return; }
        put(o, "[", 1);
        for (size_t i = 0; i < n && !o->rc; i++) {
            if (i) put(o, ",", 1);
            put_newline(o, indent, depth + 1);
            put_value(o, json_array_get(v, i), indent, depth + 1);
        }
        put_newline(o, indent, depth);
        put(o, "]", 1);
        return;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        if (!n) { put(o, "{}", 2); return; }
        member_t small[32];
        member_t *m = n <= 32 ? small : malloc(n * sizeof *m);
        if (!m) { o->rc = WEIR_ENOMEM; return; }
        for (void *it = json_object_iter((json_t *)v); it && i < n; it = json_object_iter_next((json_t *)v, it), i++) {
            m[i].key = json_object_iter_key(it);
            m[i].len = strlen(m[i].key);
            m[i].value = json_object_iter_value(it);
        }
        if (n <= 32) {  /* plans are made of small objects: insertion sort beats qsort's calls */
            for (size_t a = 1; a < n; a++)
                for (size_t b = a; b > 0 && cmp_members(&m[b - 1], &m[b]) > 0; b--) {
                    member_t t = m[b];
                    m[b] = m[b - 1];
                    m[b - 1] = t;
                }
        } else {
            qsort(m, n, sizeof *m, cmp_members);
        }
        put(o, "{", 1);
        for (i = 0; i < n && !o->rc; i++) {
            if (i) put(o, ",", 1);
            put_newline(o, indent, depth + 1);
            put_string(o, m[i].key, m[i].len);
            put(o, indent ? ": " : ":", indent ? 2 : 1);
            put_value(o, m[i].value, indent, depth + 1);
        }
        if (m != small) free(m);
        put_newline(o, indent, depth);
        put(o, "}", 1);
        return;
    }
    }
    o->rc = WEIR_EINVAL;
}

int weir_dsl_canonical(const json_t *v, int indent, weir_buf_t *out) {
    if (!v) return WEIR_EINVAL;
    out_t o = {NULL, 0, 0, out->max - (out->len < out->max ? out->len : out->max), 0};
    put_value(&o, v, indent, 0);
    int rc = o.rc ? o.rc : weir_buf_append(out, o.data, o.len);
    free(o.data);
    return rc;
}
