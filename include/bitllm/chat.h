/* Chat templates: the prompt formats of the model families bitllm loads. A model's template text
 * (HF tokenizer_config.json "chat_template", GGUF tokenizer.chat_template) is recognised by
 * distinctive substrings, as llama.cpp's llm_chat_detect_template does (there is no Jinja
 * interpreter), and rendered exactly as the official Jinja template renders the common cases:
 * a system message, multi-turn history, add_generation_prompt, BOS/EOS where the template writes
 * them. Tokenizing a rendered chat turns the template's special tokens into their ids.
 *
 * Families (the name also selects one by hand, e.g. `--chat-template chatml`):
 *   chatml      <|im_start|>role\n...<|im_end|>\n (Qwen2, Qwen2.5, Qwen3, ...)
 *   llama2      <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> (Llama-2-chat)
 *   llama3      <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> (Llama-3-Instruct)
 *   llama3.1    llama3 with the "Cutting Knowledge Date" system block (Llama-3.1/3.2/3.3)
 *   mistral-v1  <s> [INST] ... [/INST] ...</s> (Mistral's official v1 template)
 *   mistral-v3  <s>[INST] ...[/INST] ...</s>, system text in the last user turn (v3: Mistral-7B-
 *               Instruct-v0.3)
 *   zephyr      <|user|>\n...</s>\n (Zephyr, TinyLlama-1.1B-Chat) */
#ifndef BITLLM_CHAT_H
#define BITLLM_CHAT_H

#include "bitllm/tokenizer.h"

BL_API_BEGIN

typedef enum {
    BL_CHAT_CHATML = 0, BL_CHAT_LLAMA2, BL_CHAT_LLAMA3, BL_CHAT_MISTRAL_V1, BL_CHAT_MISTRAL_V3,
    BL_CHAT_ZEPHYR
} bl_chat_family;

typedef struct {
    bl_chat_family family;
    const char *name;          /* one of bl_chat_template_names() */
    bool knowledge_date;       /* llama3.1: the system block with "Cutting Knowledge Date" */
    bool dated_today;          /* ... dated today (strftime_now) rather than 26 Jul 2024 */
    bool gen_prompt_always;    /* llama3 templates that add the assistant header unconditionally */
    bool reasoning;            /* chatml that keeps <think> only in the turn after the last query
                                * (Qwen3) */
    char default_system[512];  /* chatml: the system message used when a chat has none (Qwen2) */
} bl_chat_template;

typedef struct {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} bl_chat_msg;

typedef struct {
    bool add_generation_prompt;
    const char *bos, *eos; /* bos_token / eos_token text for bl_chat_render (NULL: empty) */
    const char *date;      /* llama3.1 "Today Date: ..." (NULL: what the template would use) */
} bl_chat_opts;

const char *const *bl_chat_template_names(int *count);
bl_status bl_chat_template_by_name(const char *name, bl_chat_template *out, bl_err *err);
/* Recognises a template text; fails with a message naming the supported families. */
bl_status bl_chat_template_detect(const char *text, bl_chat_template *out, bl_err *err);
/* The template to use with tokenizer t: `name` when given, else detected from t's own template
 * text (an error when t has none or it is not recognised says to pass a name). */
bl_status bl_chat_template_for(const bl_tokenizer *t, const char *name, bl_chat_template *out,
                               bl_err *err);

/* The prompt as text (*text malloc'ed, NUL-terminated). Role errors are the template's own
 * (e.g. llama2 and mistral need user/assistant turns to alternate). */
bl_status bl_chat_render(const bl_chat_template *tmpl, const bl_chat_msg *msgs, int n,
                         const bl_chat_opts *o, char **text, size_t *len, bl_err *err);
/* The prompt as token ids: BOS/EOS where the template writes them become t's BOS/EOS ids (BOS is
 * prepended only when the template writes none and t adds one to every text, so it is never
 * doubled); special tokens spelled by the template are recognised as such. */
bl_status bl_chat_tokenize(const bl_chat_template *tmpl, const bl_tokenizer *t,
                           const bl_chat_msg *msgs, int n, const bl_chat_opts *o, int32_t **ids,
                           size_t *n_ids, bl_err *err);
/* Tokens that end an assistant turn: t's EOS and the family's end-of-turn tokens that t has
 * (<|im_end|>, <|eot_id|>, ...). Returns how many were written (at most cap). */
int bl_chat_stop_tokens(const bl_chat_template *tmpl, const bl_tokenizer *t, int32_t *ids,
                        int cap);

BL_API_END
#endif
