/* canon.h — the canonical JSON text of a plan, whose SHA-256 is the plan's version id.
 *
 * Canonical means: object keys sorted by byte value, no whitespace, integers as integers,
 * reals in the shortest "%.Ng" form (N = 15..17) that reads back to the same double and always
 * with a '.' or an exponent, strings as UTF-8 with only '"', '\\' and control characters
 * escaped. The same json_t always gives the same bytes, in any process and locale that has not
 * changed LC_NUMERIC. Deliberately not RFC 8785 (JCS), whose ECMAScript number format needs far
 * more code; weir is the only producer and checker of these bytes. */
#ifndef WEIR_DSL_CANON_H
#define WEIR_DSL_CANON_H

#include "common/util.h"

#include <jansson.h>

/* Appends the canonical text of v to out. indent > 0 gives the same text with newlines and
 * `indent` spaces per level, for people (lint -o json, golden files); the version is always
 * computed from indent 0. Returns 0, WEIR_ELIMIT (out->max reached), WEIR_ENOMEM or WEIR_EINVAL
 * (NaN, infinity, nesting deeper than 64). */
int weir_dsl_canonical(const json_t *v, int indent, weir_buf_t *out);

#endif
