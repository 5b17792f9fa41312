/* drift_step.c — the drift.detect step: a current dataset against a reference, column by column
 * with Evidently's default methods (plugins/drift.h), a report, metrics, and, when the dataset
 * drifts, a "drift" signal whose value is the share of drifted columns. Trigger rules turn that
 * signal into a retraining run (docs/signals.md). */
#include "plugins/ml/ml.h"
#include "plugins/drift.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A number for the report; JSON has no infinity (chi-squared is +inf when a category is new in
 * the current data), so those are null, and the "drifted" flag says what it meant. */
static json_t *number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int ml_drift_detect(weir_step_ctx_t *ctx, const weir_host_t *host) {
    ml_step_t s;
    if (ml_step_begin(&s, ctx, host, "drift.detect")) return -1;
    int rc = -1;
    char err[4096] = "", label[256] = "", rlabel[256] = "";
    weir_dataset_t *cur = NULL, *ref = NULL;
    uint8_t *cs = NULL, *rs = NULL;
    weir_drift_report_t rep = {0};
    weir_drift_column_opt_t *per = NULL;
    const char **skip = NULL;
    json_t *report = NULL;
    int64_t max = ml_size(&s, "max_bytes", (int64_t)1 << 30);
    if (max < 0) goto out;
    const char *curp = ml_str(&s, "current"), *refp = ml_str(&s, "reference");
    if (ml_dataset_load(curp, max, &cur, &cs, label, sizeof label, err, sizeof err) ||
        ml_dataset_load(refp, max, &ref, &rs, rlabel, sizeof rlabel, err, sizeof err)) {
        host->fail(ctx, "drift.detect: %s", err);
        goto out;
    }
    weir_drift_options_t o = {.drift_share = ml_num(&s, "drift_share", 0.5), .threshold = ml_num(&s, "threshold", 0)};
    const char *method = ml_str(&s, "method");
    if (method && weir_drift_method_from_name(method, &o.method)) {
        host->fail(ctx, "drift.detect: setting \"method\" must be auto, ks, chisquare, z, wasserstein, jensenshannon or "
                        "psi (got \"%s\")", method);
        goto out;
    }
    /* per-column choices: columns = { age = { method = "psi", threshold = 0.2 } } */
    json_t *cols = json_object_get(s.settings, "columns");
    per = calloc(json_object_size(cols) + 1, sizeof *per);
    const char *key;
    json_t *v;
    json_object_foreach(cols, key, v) {
        weir_drift_column_opt_t *c = &per[o.ncolumns++];
        c->column = key;
        const char *m = json_string_value(json_object_get(v, "method"));
        if ((m && weir_drift_method_from_name(m, &c->method)) || !json_is_object(v)) {
            host->fail(ctx, "drift.detect: setting \"columns\": column \"%s\" needs { method = ..., threshold = ... }", key);
            goto out;
        }
        c->threshold = json_number_value(json_object_get(v, "threshold"));
    }
    o.columns = per;
    /* left out: the settings' skip list, else the label (drift in the label is the model's
     * business, not the inputs') */
    json_t *sk = json_object_get(s.settings, "skip");
    skip = calloc(json_array_size(sk) + 2, sizeof *skip);
    for (size_t i = 0; i < json_array_size(sk); i++) skip[o.nskip++] = json_string_value(json_array_get(sk, i));
    if (!sk && (label[0] || rlabel[0])) skip[o.nskip++] = label[0] ? label : rlabel;
    o.skip = skip;
    if (weir_drift_detect(ref, cur, &o, &rep, err, sizeof err)) { host->fail(ctx, "drift.detect: %s", err); goto out; }

    json_t *list = json_array();
    json_t *drifted = json_array();
    for (size_t i = 0; i < rep.ncols; i++) {
        const weir_drift_column_t *c = &rep.cols[i];
        json_t *e = json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:I, s:I}", "column", c->column, "method",
                              weir_drift_method_name(c->method), "statistic", number(c->statistic), "score",
                              number(c->score), "threshold", number(c->threshold), "drifted", c->drifted,
                              "reference_rows", (json_int_t)c->n_reference, "current_rows", (json_int_t)c->n_current);
        if (!isnan(c->pvalue)) json_object_set_new(e, "pvalue", number(c->pvalue));
        json_array_append_new(list, e);
        if (c->drifted) json_array_append_new(drifted, json_string(c->column));
        host->log(ctx, c->drifted ? WEIR_PLUGIN_LOG_WARN : WEIR_PLUGIN_LOG_INFO, "%-24s %-13s score %-10.4g threshold %-6g %s",
                  c->column, weir_drift_method_name(c->method), c->score, c->threshold, c->drifted ? "DRIFT" : "ok");
    }
    report = json_pack("{s:s, s:s, s:I, s:f, s:f, s:b, s:o, s:O}", "current", curp, "reference", refp, "columns",
                       (json_int_t)rep.ncols, "share", rep.share, "drift_share", rep.drift_share, "dataset_drift",
                       rep.dataset_drift, "per_column", list, "drifted", drifted);
    const char *path = host->output(ctx, "report");
    if (!report || json_dump_file(report, path, JSON_INDENT(2) | JSON_REAL_PRECISION(12))) {
        json_decref(drifted);
        host->fail(ctx, "drift.detect: cannot write the report %s", path);
        goto out;
    }
    host->metric(ctx, "drift_share", rep.share);
    host->metric(ctx, "drifted_columns", (double)rep.ndrifted);
    host->metric(ctx, "dataset_drift", rep.dataset_drift);
    host->log(ctx, WEIR_PLUGIN_LOG_INFO, "%zu of %zu columns drifted (%.0f%%; the dataset drifts at %.0f%%): %s",
              rep.ndrifted, rep.ncols, 100 * rep.share, 100 * rep.drift_share, rep.dataset_drift ? "DRIFT" : "no drift");
    if (rep.dataset_drift) {
        json_t *sig = json_object_get(s.settings, "signal");
        const char *kind = json_string_value(json_object_get(sig, "kind"));
        const char *subject = json_string_value(json_object_get(sig, "subject"));
        const char *model = ml_str(&s, "model");
        char subj[128];
        if (!subject) {
            snprintf(subj, sizeof subj, "%s%s", model ? "model:" : "dataset", model ? model : "");
            subject = subj;
        }
        json_t *detail = json_pack("{s:O, s:I, s:I}", "drifted", drifted, "columns", (json_int_t)rep.ncols, "drifted_columns",
                                   (json_int_t)rep.ndrifted);
        /* the monitor's own attributes: what the trigger rule passes on, e.g. where the new data is */
        json_t *attrs = json_object_get(sig, "attributes");
        if (attrs && !json_is_object(attrs)) {
            json_decref(detail);
            json_decref(drifted);
            host->fail(ctx, "drift.detect: setting \"signal\": attributes must be a map of names to values");
            goto out;
        }
        json_object_update_missing(detail, attrs);
        char *ds = json_dumps(detail, JSON_COMPACT);
        json_decref(detail);
        if (host->emit_signal(ctx, kind ? kind : "drift", subject, rep.share, ds)) {
            free(ds);
            json_decref(drifted);
            host->fail(ctx, "drift.detect: setting \"signal\": kind \"%s\" is not a signal kind", kind ? kind : "drift");
            goto out;
        }
        free(ds);
        if (json_is_true(json_object_get(s.settings, "fail_on_drift"))) {
            json_decref(drifted);
            host->fail(ctx, "drift.detect: %zu of %zu columns drifted", rep.ndrifted, rep.ncols);
            goto out;
        }
    }
    json_decref(drifted);
    rc = 0;
out:
    weir_drift_report_free(&rep);
    free(per);
    free(skip);
    weir_dataset_free(cur);
    weir_dataset_free(ref);
    free(cs);
    free(rs);
    json_decref(report);
    ml_step_end(&s);
    return rc;
}
