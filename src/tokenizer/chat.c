/* Chat templates (include/bitllm/chat.h): one table of families, detection by substrings of the
 * template text, and one renderer per family that writes what the official Jinja template writes.
 * The renderers produce text plus the places where the template writes bos_token / eos_token, so
 * the same rendering serves as display text and, with those places turned into token ids, as the
 * tokenized prompt. */
#include "bitllm/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tok_internal.h"

/* ---- the rendered prompt ---- */

enum { MARK_BOS = 0, MARK_EOS = 1 };
typedef struct {
    size_t off, len;
    int which;
} mark;

typedef struct {
    tk_buf text;
    mark *marks;
    size_t n_marks, cap_marks;
    const char *bos, *eos; /* how bos_token / eos_token are spelled */
    bool oom;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
    if (!o->oom && !tk_buf_put(&o->text, s, n)) o->oom = true;
}
static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void put_mark(out_t *o, int which) {
    const char *s = which == MARK_BOS ? o->bos : o->eos;
    mark *m = tk_grow(o->marks, &o->cap_marks, o->n_marks + 1, sizeof *m);
    if (!m) {
        o->oom = true;
        return;
    }
    o->marks = m;
    m[o->n_marks++] = (mark){o->text.n, strlen(s), which};
    puts_(o, s);
}

/* Python's str.isspace (what Jinja's trim and str.strip() remove): Unicode White_Space plus the
 * separators U+001C..U+001F. */
static bool py_space(uint32_t cp) { return tk_is_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

/* s[*b, *e) without leading (lead) and trailing (trail) whitespace; only '\n' when nl_only. */
static void strip_span(const char *s, size_t *b, size_t *e, bool lead, bool trail, bool nl_only) {
    while (lead && *b < *e) {
        uint32_t cp;
        size_t l = tk_utf8_decode((const uint8_t *)s + *b, *e - *b, &cp);
        if (!l || !(nl_only ? cp == '\n' : py_space(cp))) break;
        *b += l;
    }
    while (trail && *e > *b) {
        size_t p = *e - 1;
        while (p > *b && *e - p < 4 && ((uint8_t)s[p] & 0xC0) == 0x80) p--;
        uint32_t cp;
        size_t l = tk_utf8_decode((const uint8_t *)s + p, *e - p, &cp);
        if (!l || p + l != *e || !(nl_only ? cp == '\n' : py_space(cp))) break;
        *e = p;
    }
}

static void put_trim(out_t *o, const char *s) {
    size_t b = 0, e = strlen(s);
    strip_span(s, &b, &e, true, true, false);
    put(o, s + b, e - b);
}

/* ---- helpers on the messages ---- */

static bool is_role(const bl_chat_msg *m, const char *r) { return strcmp(m->role, r) == 0; }

static bl_status check_roles(const bl_chat_msg *msgs, int n, bl_err *err) {
    if (n <= 0) return bl_fail(err, BL_ERR_ARG, "chat: no messages");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return bl_fail(err, BL_ERR_ARG, "chat: message %d has no role or content", i);
        if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") &&
            !is_role(&msgs[i], "assistant"))
            return bl_fail(err, BL_ERR_ARG, "chat: message %d: role \"%.32s\" is not supported "
                           "(system, user, assistant)", i, msgs[i].role);
    }
    return BL_OK;
}

/* The templates that take an optional leading system message and then need user/assistant
 * turns to alternate, starting with user (their raise_exception). */
static bl_status check_alternation(const bl_chat_msg *msgs, int n, int first, bl_err *err) {
    for (int i = first; i < n; i++)
        if (is_role(&msgs[i], "user") != ((i - first) % 2 == 0))
            return bl_fail(err, BL_ERR_ARG, "chat: after the optional system message, "
                           "conversation roles must alternate user/assistant/user/assistant/... "
                           "(message %d is \"%s\")", i, msgs[i].role);
    return BL_OK;
}

/* ---- renderers ---- */

static bl_status render_chatml(const bl_chat_template *t, const bl_chat_msg *m, int n,
                               const bl_chat_opts *op, out_t *o, bl_err *err) {
    (void)err;
    if (t->default_system[0] && !is_role(&m[0], "system")) {
        puts_(o, "<|im_start|>system\n");
        puts_(o, t->default_system);
        puts_(o, "<|im_end|>\n");
    }
    /* the last user message that is not a wrapped tool response (Qwen3's last_query_index) */
    int last_query = n - 1;
    for (int i = n - 1; t->reasoning && i >= 0; i--) {
        const char *c = m[i].content;
        size_t len = strlen(c);
        if (is_role(&m[i], "user") && !(strncmp(c, "<tool_response>", 15) == 0 && len >= 31 &&
                                         strcmp(c + len - 16, "</tool_response>") == 0)) {
            last_query = i;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        puts_(o, "<|im_start|>");
        puts_(o, m[i].role);
        puts_(o, "\n");
        const char *c = m[i].content, *close = t->reasoning ? strstr(c, "</think>") : NULL;
        if (!is_role(&m[i], "assistant") || !t->reasoning) {
            puts_(o, c);
        } else {
            /* Qwen3: the answer is what follows the last </think>; the reasoning (between the
             * last <think> before the first </think> and it) is kept only after the last query */
            size_t cb = 0, ce = strlen(c), rb = 0, re = 0;
            if (close) {
                const char *last = close, *p;
                while ((p = strstr(last + 8, "</think>"))) last = p;
                cb = (size_t)(last + 8 - c);
                strip_span(c, &cb, &ce, true, false, true);
                re = (size_t)(close - c);
                for (const char *q = c; (q = strstr(q, "<think>")) && q < close; q += 7)
                    rb = (size_t)(q + 7 - c);
                strip_span(c, &rb, &re, false, true, true);
                strip_span(c, &rb, &re, true, false, true);
            }
            if (i > last_query && (i == n - 1 || re > rb)) {
                strip_span(c, &rb, &re, true, true, true);
                puts_(o, "<think>\n");
                put(o, c + rb, re - rb);
                puts_(o, "\n</think>\n\n");
                strip_span(c, &cb, &ce, true, false, true);
            }
            put(o, c + cb, ce - cb);
        }
        puts_(o, "<|im_end|>\n");
    }
    if (op->add_generation_prompt) puts_(o, "<|im_start|>assistant\n");
    return BL_OK;
}

static bl_status render_llama2(const bl_chat_template *t, const bl_chat_msg *m, int n,
                               const bl_chat_opts *op, out_t *o, bl_err *err) {
    (void)t, (void)op; /* the official template ignores add_generation_prompt */
    const int first = is_role(&m[0], "system") ? 1 : 0;
    bl_status s = check_alternation(m, n, first, err);
    if (s) return s;
    tk_buf content = {0};
    for (int i = first; i < n && !o->oom; i++) {
        content.n = 0;
        bool ok = true;
        if (i == first && first) {
            ok = tk_buf_put(&content, "<<SYS>>\n", 8) &&
                 tk_buf_put(&content, m[0].content, strlen(m[0].content)) &&
                 tk_buf_put(&content, "\n<</SYS>>\n\n", 11);
        }
        ok = ok && tk_buf_put(&content, m[i].content, strlen(m[i].content)) &&
             tk_buf_put(&content, "", 1);
        if (!ok) {
            o->oom = true;
            break;
        }
        if (is_role(&m[i], "user")) {
            put_mark(o, MARK_BOS);
            puts_(o, "[INST] ");
            put_trim(o, content.p);
            puts_(o, " [/INST]");
        } else {
            puts_(o, " ");
            put_trim(o, content.p);
            puts_(o, " ");
            put_mark(o, MARK_EOS);
        }
    }
    tk_buf_free(&content);
    return BL_OK;
}

static void knowledge_date(const bl_chat_opts *op, bool today, char *buf, size_t cap) {
    if (op->date) {
        snprintf(buf, cap, "%s", op->date);
        return;
    }
    snprintf(buf, cap, "26 Jul 2024"); /* the template's default date_string */
    if (!today) return;
    time_t now = time(NULL);
    struct tm tmv;
    if (localtime_r(&now, &tmv)) strftime(buf, cap, "%d %b %Y", &tmv);
}

static void llama3_turn(out_t *o, const char *role, const char *content) {
    puts_(o, "<|start_header_id|>");
    puts_(o, role);
    puts_(o, "<|end_header_id|>\n\n");
    put_trim(o, content);
    puts_(o, "<|eot_id|>");
}

static bl_status render_llama3(const bl_chat_template *t, const bl_chat_msg *m, int n,
                               const bl_chat_opts *op, out_t *o, bl_err *err) {
    (void)err;
    int first = 0;
    put_mark(o, MARK_BOS);
    if (t->knowledge_date) {
        char date[64];
        knowledge_date(op, t->dated_today, date, sizeof date);
        puts_(o, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                 "December 2023\nToday Date: ");
        puts_(o, date);
        puts_(o, "\n\n");
        if (is_role(&m[0], "system")) {
            put_trim(o, m[0].content);
            first = 1;
        }
        puts_(o, "<|eot_id|>");
    }
    for (int i = first; i < n; i++) llama3_turn(o, m[i].role, m[i].content);
    if (op->add_generation_prompt || t->gen_prompt_always)
        puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return BL_OK;
}

static bl_status render_mistral(const bl_chat_template *t, const bl_chat_msg *m, int n,
                                const bl_chat_opts *op, out_t *o, bl_err *err) {
    (void)op; /* neither official template uses add_generation_prompt */
    const bool v1 = t->family == BL_CHAT_MISTRAL_V1;
    const int first = is_role(&m[0], "system") ? 1 : 0;
    bl_status s = check_alternation(m, n, first, err);
    if (s) return s;
    put_mark(o, MARK_BOS);
    for (int i = first; i < n; i++) {
        if (is_role(&m[i], "user")) {
            /* v1 puts the system text in the first user turn, v3 in the last message if it is a
             * user turn (the system text is dropped otherwise, as the template does) */
            const bool sys = first && (v1 ? i == first : i == n - 1);
            puts_(o, v1 ? " [INST] " : "[INST] ");
            if (sys) {
                puts_(o, m[0].content);
                puts_(o, "\n\n");
            }
            puts_(o, m[i].content);
            puts_(o, v1 ? " [/INST]" : "[/INST]");
        } else {
            puts_(o, " ");
            if (v1) puts_(o, m[i].content);
            else put_trim(o, m[i].content);
            put_mark(o, MARK_EOS);
        }
    }
    return BL_OK;
}

static bl_status render_zephyr(const bl_chat_template *t, const bl_chat_msg *m, int n,
                               const bl_chat_opts *op, out_t *o, bl_err *err) {
    (void)t, (void)err;
    for (int i = 0; i < n; i++) {
        puts_(o, "<|");
        puts_(o, m[i].role);
        puts_(o, "|>\n");
        puts_(o, m[i].content);
        put_mark(o, MARK_EOS);
        puts_(o, "\n");
        if (i == n - 1 && op->add_generation_prompt) puts_(o, "<|assistant|>\n");
    }
    return BL_OK;
}

/* ---- the table ---- */

typedef bl_status (*render_fn)(const bl_chat_template *, const bl_chat_msg *, int,
                               const bl_chat_opts *, out_t *, bl_err *);
static const struct family {
    const char *name;
    bl_chat_family family;
    bool knowledge_date;
    render_fn render;
    const char *end_of_turn[2]; /* tokens besides EOS that end an assistant turn */
} families[] = {
    {"chatml", BL_CHAT_CHATML, false, render_chatml, {"<|im_end|>", "<|endoftext|>"}},
    {"llama2", BL_CHAT_LLAMA2, false, render_llama2, {NULL, NULL}},
    {"llama3", BL_CHAT_LLAMA3, false, render_llama3, {"<|eot_id|>", "<|end_of_text|>"}},
    {"llama3.1", BL_CHAT_LLAMA3, true, render_llama3, {"<|eot_id|>", "<|eom_id|>"}},
    {"mistral-v1", BL_CHAT_MISTRAL_V1, false, render_mistral, {NULL, NULL}},
    {"mistral-v3", BL_CHAT_MISTRAL_V3, false, render_mistral, {NULL, NULL}},
    {"zephyr", BL_CHAT_ZEPHYR, false, render_zephyr, {NULL, NULL}},
};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

static const struct family *family_of(const bl_chat_template *t) {
    for (int i = 0; i < N_FAMILIES; i++)
        if (families[i].family == t->family && families[i].knowledge_date == t->knowledge_date)
            return &families[i];
    return NULL;
}

const char *const *bl_chat_template_names(int *count) {
    static const char *names[N_FAMILIES + 1];
    for (int i = 0; i < N_FAMILIES; i++) names[i] = families[i].name;
    *count = N_FAMILIES;
    return names;
}

static const char *name_list(void) {
    return "chatml, llama2, llama3, llama3.1, mistral-v1, mistral-v3, zephyr";
}

bl_status bl_chat_template_by_name(const char *name, bl_chat_template *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    for (int i = 0; name && i < N_FAMILIES; i++)
        if (strcmp(families[i].name, name) == 0) {
            out->family = families[i].family;
            out->name = families[i].name;
            out->knowledge_date = families[i].knowledge_date;
            return BL_OK;
        }
    return bl_fail(err, BL_ERR_ARG, "unknown chat template \"%.64s\" (known: %s)",
                   name ? name : "", name_list());
}

/* Qwen2-style default system message: a string literal '<|im_start|>system\n...<|im_end|>'
 * written whole in the template (not built from messages[0]). */
static void chatml_default_system(const char *text, char *out, size_t cap) {
    static const char key[] = "<|im_start|>system";
    for (const char *p = text; (p = strstr(p, key)); p++) {
        if (p == text || (p[-1] != '\'' && p[-1] != '"')) continue;
        const char quote = p[-1], *lit = p + sizeof key - 1;
        /* the newline after "system", escaped in the Jinja string or a real one */
        if (lit[0] == '\\' && lit[1] == 'n') lit += 2;
        else if (lit[0] == '\n') lit++;
        else continue;
        const char *end = strstr(lit, "<|im_end|>");
        if (!end || end == lit) continue;
        bool closed = false;
        for (const char *q = lit; q < end; q++)
            if (*q == quote && q[-1] != '\\') closed = true;
        if (closed) continue;
        size_t k = 0;
        for (const char *q = lit; q < end && k + 1 < cap; q++) {
            if (*q == '\\' && q + 1 < end) {
                q++;
                out[k++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                out[k++] = *q;
            }
        }
        out[k] = 0;
        return;
    }
}

bl_status bl_chat_template_detect(const char *text, bl_chat_template *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    if (!text || !*text) return bl_fail(err, BL_ERR_ARG, "empty chat template");
#define HAS(s) (strstr(text, s) != NULL)
    const char *name = NULL;
    if (HAS("<|im_start|>")) {
        name = "chatml";
    } else if (HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]"))
            return bl_fail(err, BL_ERR_UNSUPPORTED, "chat template: Mistral v7 ([SYSTEM_PROMPT]) "
                           "is not supported (known: %s)", name_list());
        if (HAS("' [INST] ' + system_message") || (HAS("[AVAILABLE_TOOLS]") && HAS(" [INST]")))
            name = "mistral-v1";
        else if (HAS("[AVAILABLE_TOOLS]") && HAS("\"[INST]\""))
            return bl_fail(err, BL_ERR_UNSUPPORTED, "chat template: Mistral v3-tekken is not "
                           "supported (known: %s)", name_list());
        else if (HAS("[AVAILABLE_TOOLS]"))
            name = "mistral-v3";
        else if (HAS("<<SYS>>"))
            name = "llama2";
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        name = HAS("Cutting Knowledge Date") ? "llama3.1" : "llama3";
    } else if (HAS("<|user|>") && HAS("<|assistant|>") && HAS("<|system|>") && HAS("eos_token")) {
        name = "zephyr";
    }
    if (!name)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "chat template not recognised (it is none of %s; "
                       "it starts \"%.60s\")", name_list(), text);
    bl_status s = bl_chat_template_by_name(name, out, err);
    if (s) return s;
    if (out->family == BL_CHAT_CHATML) {
        chatml_default_system(text, out->default_system, sizeof out->default_system);
        out->reasoning = HAS("</think>");
    }
    if (out->family == BL_CHAT_LLAMA3) {
        out->gen_prompt_always = !HAS("add_generation_prompt");
        out->dated_today = HAS("strftime_now");
    }
#undef HAS
    return BL_OK;
}

bl_status bl_chat_template_for(const bl_tokenizer *t, const char *name, bl_chat_template *out,
                               bl_err *err) {
    if (name) return bl_chat_template_by_name(name, out, err);
    const char *text = t ? bl_tokenizer_chat_template(t) : NULL;
    if (!text)
        return bl_fail(err, BL_ERR_ARG, "%s has no chat template (tokenizer_config.json "
                       "\"chat_template\" or GGUF tokenizer.chat_template); pass --chat-template "
                       "NAME (%s)", t ? t->path : "the model", name_list());
    bl_status s = bl_chat_template_detect(text, out, err);
    if (s && err) {
        bl_err e = *err;
        return bl_fail(err, s, "%s: %s; pass --chat-template NAME", t->path, e.msg);
    }
    return s;
}

/* ---- rendering and tokenizing ---- */

static bl_status render(const bl_chat_template *t, const bl_chat_msg *msgs, int n,
                        const bl_chat_opts *op, out_t *o, bl_err *err) {
    const struct family *f = family_of(t);
    if (!f) return bl_fail(err, BL_ERR_ARG, "chat: bad template");
    bl_status s = check_roles(msgs, n, err);
    if (!s) s = f->render(t, msgs, n, op, o, err);
    if (!s && o->oom) s = bl_fail(err, BL_ERR_NOMEM, "chat: out of memory rendering the prompt");
    return s;
}

static void out_free(out_t *o) {
    tk_buf_free(&o->text);
    free(o->marks);
}

bl_status bl_chat_render(const bl_chat_template *t, const bl_chat_msg *msgs, int n,
                         const bl_chat_opts *op, char **text, size_t *len, bl_err *err) {
    *text = NULL;
    out_t o = {.bos = op->bos ? op->bos : "", .eos = op->eos ? op->eos : ""};
    bl_status s = render(t, msgs, n, op, &o, err);
    if (!s && !tk_buf_put(&o.text, "", 1)) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (s) {
        out_free(&o);
        return s;
    }
    free(o.marks);
    *text = o.text.p;
    if (len) *len = o.text.n - 1;
    return BL_OK;
}

/* How the tokenizer spells a token (its vocabulary key), NUL-terminated into buf. */
static const char *spelling(const bl_tokenizer *t, int32_t id, char *buf, size_t cap) {
    buf[0] = 0;
    if (id >= 0 && id < t->n_vocab) {
        size_t n = t->key_len[id] < cap - 1 ? t->key_len[id] : cap - 1;
        memcpy(buf, t->keys.p + t->key_off[id], n);
        buf[n] = 0;
    }
    return buf;
}

bl_status bl_chat_tokenize(const bl_chat_template *t, const bl_tokenizer *tok,
                           const bl_chat_msg *msgs, int n, const bl_chat_opts *op, int32_t **ids,
                           size_t *n_ids, bl_err *err) {
    *ids = NULL;
    *n_ids = 0;
    char bos[64], eos[64];
    out_t o = {.bos = spelling(tok, tok->bos, bos, sizeof bos),
               .eos = spelling(tok, tok->eos, eos, sizeof eos)};
    bl_status s = render(t, msgs, n, op, &o, err);
    bl_tok_piece *p = NULL;
    if (!s && !(p = bl_malloc_array(2 * o.n_marks + 2, sizeof *p)))
        s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (s) {
        out_free(&o);
        return s;
    }
    size_t np = 0, at = 0;
    /* the template writes no BOS: add the tokenizer's own when it adds one to every text */
    const bool writes_bos = o.n_marks && o.marks[0].which == MARK_BOS && o.marks[0].off == 0;
    if (!writes_bos && bl_tokenizer_add_bos(tok)) p[np++] = (bl_tok_piece){"", 0, tok->bos};
    for (size_t i = 0; i < o.n_marks; i++) {
        const mark *mk = &o.marks[i];
        const int32_t id = mk->which == MARK_BOS ? tok->bos : tok->eos;
        if (mk->off > at) p[np++] = (bl_tok_piece){o.text.p + at, mk->off - at, -1};
        /* a model without the token: its (empty) spelling is all that is left */
        if (id >= 0) p[np++] = (bl_tok_piece){o.text.p + mk->off, mk->len, id};
        at = mk->off + mk->len;
    }
    if (o.text.n > at) p[np++] = (bl_tok_piece){o.text.p + at, o.text.n - at, -1};
    s = bl_tokenizer_encode_pieces(tok, p, np, true, ids, n_ids, err);
    free(p);
    out_free(&o);
    return s;
}

int bl_chat_stop_tokens(const bl_chat_template *t, const bl_tokenizer *tok, int32_t *ids,
                        int cap) {
    int n = 0;
    if (tok->eos >= 0 && n < cap) ids[n++] = tok->eos;
    const struct family *f = family_of(t);
    for (int i = 0; f && i < 2 && f->end_of_turn[i]; i++) {
        int32_t id = tk_find_token(tok, f->end_of_turn[i], strlen(f->end_of_turn[i]));
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= ids[k] == id;
        if (id >= 0 && !seen && n < cap) ids[n++] = id;
    }
    return n;
}
