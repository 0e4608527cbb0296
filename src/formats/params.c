/* Generic code over the formats' traits: parameter schemas (method specs, quantization_config
 * JSON, which options a method reads) and the bpw → middle-dimension search. Nothing here
 * knows a particular format. */
#include "formats/format_json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const qparam_names[BL_QP_COUNT] = {
    [BL_QP_BPW] = "bpw",       [BL_QP_SVID] = "svid",
    [BL_QP_ENVELOPE_RANK] = "envelope_rank", [BL_QP_PATHS] = "paths",
    [BL_QP_ACTIVATION_AWARE] = "activation_aware", [BL_QP_ADAM_STEPS] = "adam_steps",
    [BL_QP_GROUP] = "group",   [BL_QP_CALIB] = "calib",
    [BL_QP_ITERS] = "iters",   [BL_QP_SEED] = "seed",
};

const char *bl_qparam_name(bl_qparam p) {
    return (int)p >= 0 && p < BL_QP_COUNT ? qparam_names[p] : "?";
}

int64_t bl_format_param_get(const bl_format_param *d, const bl_format_params *p) {
    const char *b = (const char *)p + d->offset;
    switch (d->type) {
    case BL_FPT_INT: return *(const int *)(const void *)b;
    case BL_FPT_I64: return *(const int64_t *)(const void *)b;
    case BL_FPT_BOOL: return *(const bool *)(const void *)b;
    }
    return 0;
}

static void param_set(const bl_format_param *d, bl_format_params *p, int64_t v) {
    char *b = (char *)p + d->offset;
    switch (d->type) {
    case BL_FPT_INT: *(int *)(void *)b = (int)v; break;
    case BL_FPT_I64: *(int64_t *)(void *)b = v; break;
    case BL_FPT_BOOL: *(bool *)(void *)b = v != 0; break;
    }
}

static const bl_format_param *schema_find(const bl_format_ops *f, const char *key, size_t len) {
    for (int i = 0; i < f->n_params; i++) {
        const bl_format_param *d = &f->params[i];
        if ((strlen(d->key) == len && strncmp(d->key, key, len) == 0) ||
            (d->alias && strlen(d->alias) == len && strncmp(d->alias, key, len) == 0))
            return d;
    }
    return NULL;
}

static void schema_keys(const bl_format_ops *f, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < f->n_params && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", f->params[i].key);
    if (!f->n_params) snprintf(buf, cap, "none");
}

/* "key=value,key=value" into m->params. */
static bl_status parse_assignments(bl_method *m, const char *s, const char *spec, bl_err *err) {
    const bl_format_ops *f = m->format;
    uint64_t seen = 0; /* parameters set by this list (the schema has fewer than 64) */
    while (*s) {
        const char *eq = strchr(s, '='), *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        if (!eq || eq > end || eq == s) {
            return bl_fail(err, BL_ERR_ARG, "method '%s': expected key=value, got '%.*s'", spec,
                           (int)(end - s), s);
        }
        const bl_format_param *d = schema_find(f, s, (size_t)(eq - s));
        if (!d) {
            char keys[160];
            schema_keys(f, keys, sizeof keys);
            return bl_fail(err, BL_ERR_ARG, "method '%s': %s has no parameter '%.*s' (it has: %s)",
                           spec, f->name, (int)(eq - s), s, keys);
        }
        const int idx = (int)(d - f->params);
        if (idx < 64 && (seen >> idx & 1))
            return bl_fail(err, BL_ERR_ARG, "method '%s': %s is given twice", spec, d->key);
        if (idx < 64) seen |= (uint64_t)1 << idx;
        char val[32];
        size_t vl = (size_t)(end - eq - 1);
        if (vl == 0 || vl >= sizeof val)
            return bl_fail(err, BL_ERR_ARG, "method '%s': bad value for %s", spec, d->key);
        memcpy(val, eq + 1, vl);
        val[vl] = 0;
        int64_t v;
        if (d->type == BL_FPT_BOOL && (!strcmp(val, "true") || !strcmp(val, "false"))) {
            v = !strcmp(val, "true");
        } else {
            char *e;
            errno = 0;
            long long x = strtoll(val, &e, 10);
            if (*e || errno || !isdigit((unsigned char)val[val[0] == '-']))
                return bl_fail(err, BL_ERR_ARG, "method '%s': %s=%s is not an integer", spec,
                               d->key, val);
            v = x;
        }
        if (v < d->lo || v > d->hi)
            return bl_fail(err, BL_ERR_ARG, "method '%s': %s=%lld is outside [%lld, %lld] (%s)",
                           spec, d->key, (long long)v, (long long)d->lo, (long long)d->hi,
                           d->help);
        param_set(d, &m->params, v);
        if (*end && !end[1])
            return bl_fail(err, BL_ERR_ARG, "method '%s': nothing after the last ','", spec);
        s = *end ? end + 1 : end;
    }
    return BL_OK;
}

static void set_defaults(bl_method *m) {
    memset(&m->params, 0, sizeof m->params);
    for (int i = 0; i < m->format->n_params; i++)
        param_set(&m->format->params[i], &m->params, m->format->params[i].def);
}

bl_status bl_method_parse(const char *spec, bl_method *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    const char *colon = strchr(spec, ':');
    size_t nl = colon ? (size_t)(colon - spec) : strlen(spec);
    char name[64];
    if (nl == 0 || nl >= sizeof name)
        return bl_fail(err, BL_ERR_ARG, "method '%s': no format name", spec);
    memcpy(name, spec, nl);
    name[nl] = 0;
    int count;
    const bl_format_ops *const *all = bl_format_list(&count);
    const char *alias_params = NULL;
    for (int i = 0; i < count && !out->format; i++) {
        if (!strcmp(all[i]->name, name)) out->format = all[i];
        for (int a = 0; a < all[i]->n_aliases && !out->format; a++)
            if (!strcmp(all[i]->aliases[a].name, name)) {
                out->format = all[i];
                alias_params = all[i]->aliases[a].params;
            }
    }
    if (!out->format) {
        char names[256];
        size_t k = 0;
        for (int i = 0; i < count && k < sizeof names; i++)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
                                  all[i]->name);
        return bl_fail(err, BL_ERR_ARG, "unknown method '%s' (formats: %s; `bitllm formats` "
                       "lists them with their parameters)", spec, names);
    }
    set_defaults(out);
    bl_status s = alias_params ? parse_assignments(out, alias_params, spec, err) : BL_OK;
    if (!s && colon && !colon[1])
        s = bl_fail(err, BL_ERR_ARG, "method '%s': no key=value after ':'", spec);
    if (!s && colon) s = parse_assignments(out, colon + 1, spec, err);
    return s;
}

bl_status bl_method_set_flag(bl_method *m, bl_qparam flag, int64_t value, bl_err *err) {
    for (int i = 0; i < m->format->n_params; i++) {
        const bl_format_param *d = &m->format->params[i];
        if (d->flag != (int)flag) continue;
        if (value < d->lo || value > d->hi)
            return bl_fail(err, BL_ERR_ARG, "%s: %s %lld is outside [%lld, %lld]",
                           m->format->name, d->key, (long long)value, (long long)d->lo,
                           (long long)d->hi);
        param_set(d, &m->params, value);
        return BL_OK;
    }
    return bl_fail(err, BL_ERR_ARG, "%s has no parameter for option %s", m->format->name,
                   bl_qparam_name(flag));
}

void bl_method_name(const bl_method *m, char *buf, size_t cap) {
    for (int a = 0; a < m->format->n_aliases; a++) {
        bl_method t = {.format = m->format};
        set_defaults(&t);
        bool same = parse_assignments(&t, m->format->aliases[a].params, "", NULL) == BL_OK;
        for (int i = 0; i < m->format->n_params && same; i++) {
            const bl_format_param *d = &m->format->params[i];
            /* only the keys the alias sets decide */
            if (strstr(m->format->aliases[a].params, d->key))
                same = bl_format_param_get(d, &t.params) == bl_format_param_get(d, &m->params);
        }
        if (same) {
            snprintf(buf, cap, "%s", m->format->aliases[a].name);
            return;
        }
    }
    snprintf(buf, cap, "%s", m->format->name);
}

void bl_method_spec(const bl_method *m, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "%s", m->format->name);
    for (int i = 0; i < m->format->n_params && k < cap; i++) {
        const bl_format_param *d = &m->format->params[i];
        k += (size_t)snprintf(buf + k, cap - k, "%c%s=%lld", i ? ',' : ':', d->key,
                              (long long)bl_format_param_get(d, &m->params));
    }
}

/* Options a random draw reads: what fixes the shapes (the format's parameters, the bpw target)
 * and the seed. */
static const unsigned fit_only = BL_QP_BIT(BL_QP_SVID) | BL_QP_BIT(BL_QP_ACTIVATION_AWARE) |
                                 BL_QP_BIT(BL_QP_ADAM_STEPS) | BL_QP_BIT(BL_QP_CALIB) |
                                 BL_QP_BIT(BL_QP_ITERS);

bool bl_method_uses(const bl_method *m, bool random_factors, bl_qparam p) {
    if (!m->format || (int)p < 0 || p >= BL_QP_COUNT) return false;
    unsigned u = m->format->opts_used ? m->format->opts_used(&m->params) : 0;
    if (random_factors) u = (u & ~fit_only) | BL_QP_BIT(BL_QP_SEED);
    return u & BL_QP_BIT(p);
}

void bl_qparam_users(bl_qparam p, bool random_factors, char *buf, size_t cap) {
    int count;
    const bl_format_ops *const *all = bl_format_list(&count);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < count && k < cap; i++) {
        bl_method m = {.format = all[i]};
        set_defaults(&m);
        bool used = bl_method_uses(&m, random_factors, p);
        for (int a = 0; a < all[i]->n_aliases && !used; a++) { /* e.g. rtn1 vs rtn2 */
            parse_assignments(&m, all[i]->aliases[a].params, "", NULL);
            used = bl_method_uses(&m, random_factors, p);
        }
        if (used) k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", all[i]->name);
    }
    if (!buf[0]) snprintf(buf, cap, "none");
}

int64_t bl_format_mid_for_bpw(const bl_format_ops *f, int64_t m, int64_t n,
                              const bl_format_params *p, double bpw) {
    if (m < 1 || n < 1 || !(bpw > 0.0)) return 1;
    const double budget = bpw * (double)m * (double)n;
    bl_format_params q = *p;
    int64_t lo = 1, hi = BL_MAX_MID; /* answer in [lo, hi]: the largest mid that fits, or 1 */
    while (lo < hi) {
        q.mid = lo + (hi - lo + 1) / 2;
        if ((double)bl_format_stored_bits(f, m, n, &q) <= budget) lo = q.mid;
        else hi = q.mid - 1;
    }
    return lo;
}

cJSON *bl_format_params_to_json(const bl_linear *L) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", L->ops->name);
    for (int i = 0; i < L->ops->n_params; i++) {
        const bl_format_param *d = &L->ops->params[i];
        int64_t v = bl_format_param_get(d, &L->params);
        if (!v) continue;
        if (d->type == BL_FPT_BOOL) cJSON_AddBoolToObject(o, d->key, true);
        else cJSON_AddNumberToObject(o, d->key, (double)v); /* |v| <= 2^24: exact */
    }
    return o;
}

bl_status bl_format_params_from_json(const cJSON *o, const char *where, const bl_format_ops **ops,
                                     bl_format_params *p, bl_err *err) {
    memset(p, 0, sizeof *p);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsObject(o) || !cJSON_IsString(f))
        return bl_fail(err, BL_ERR_FORMAT,
                       "quantization_config.layers[%s]: needs an object with a \"format\" string",
                       where);
    *ops = bl_format_find(f->valuestring);
    if (!*ops)
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "quantization_config.layers[%s]: unknown format \"%.40s\"", where,
                       f->valuestring);
    for (int i = 0; i < (*ops)->n_params; i++) {
        const bl_format_param *d = &(*ops)->params[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, d->key);
        if (!v) continue; /* absent: 0 / false, which the format's load checks */
        if (d->type == BL_FPT_BOOL) {
            if (!cJSON_IsBool(v))
                return bl_fail(err, BL_ERR_FORMAT,
                               "quantization_config.layers[%s]: \"%s\" must be true or false",
                               where, d->key);
            param_set(d, p, cJSON_IsTrue(v));
            continue;
        }
        /* a checkpoint stores resolved values: 0 ("from a bpw target") is no stored value */
        const int64_t lo = d->lo > 1 ? d->lo : 1;
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < (double)lo || v->valuedouble > (double)d->hi)
            return bl_fail(err, BL_ERR_FORMAT,
                           "quantization_config.layers[%s]: \"%s\" must be an integer in "
                           "[%lld, %lld]", where, d->key, (long long)lo, (long long)d->hi);
        param_set(d, p, (int64_t)v->valuedouble);
    }
    return BL_OK;
}
