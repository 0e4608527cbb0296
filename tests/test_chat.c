/* Chat templates: detection from the official template texts, renderings compared with reference
 * strings written down here by applying each official Jinja template by hand (system message,
 * multi-turn history, add_generation_prompt, BOS/EOS), the token ids of rendered chats with the
 * real Llama-3 and Qwen3 tokenizers and a SentencePiece vocabulary (special tokens as single ids,
 * BOS never doubled), stop tokens, and clear errors. */
#include <stdlib.h>
#include <string.h>

#include "bitllm/chat.h"
#include "bitllm/model.h"
#include "test.h"

/* ---- official template texts (as in the models' tokenizer_config.json, Jinja source) ---- */

/* meta-llama/Llama-2-7b-chat-hf */
static const char *tmpl_llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] "
    "== 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

/* meta-llama/Meta-Llama-3-8B-Instruct */
static const char *tmpl_llama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* meta-llama/Llama-3.1-8B-Instruct, without its tool-calling branches */
static const char *tmpl_llama31 =
    "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul "
    "2024\" %}\n{%- endif %}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set "
    "system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n{{- "
    "\"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{{- \"Cutting Knowledge Date: "
    "December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{{- "
    "system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n    {{- "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n";

/* Qwen/Qwen2-7B-Instruct */
static const char *tmpl_qwen2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Qwen/Qwen2.5-7B-Instruct, its tool-calling branches shortened: the default system message is
 * the literal of the branch without tools, not the one of the tools branch */
static const char *tmpl_qwen25 =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
    "'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
    "Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n{%- "
    "else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- "
    "'<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n "
    "       {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages "
    "%}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not "
    "loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- "
    "'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    "
    "{%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- "
    "'<|im_start|>assistant\\n' }}\n{%- endif %}\n";

/* mistralai/Mistral-7B-Instruct-v0.1 (Mistral's official v1 template) */
static const char *tmpl_mistral_v1 =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
    "messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- "
    "set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in "
    "loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n       "
    " {{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == "
    "'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' "
    "[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else "
    "%}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n  "
    "  {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + "
    "eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are "
    "supported, with the exception of an initial optional system message!') }}\n    {%- endif "
    "%}\n{%- endfor %}\n";

/* mistralai/Mistral-7B-Instruct-v0.3, its tool-calling branches shortened */
static const char *tmpl_mistral_v3 =
    "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = "
    "messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    "
    "{%- set loop_messages = messages %}\n{%- endif %}\n{{- bos_token }}\n{%- for message in "
    "loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not "
    "none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n     "
    "       {{- \"[/AVAILABLE_TOOLS]\" }}\n        {%- endif %}\n        {%- if loop.last and "
    "system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + "
    "message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + "
    "message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message[\"role\"] "
    "== \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- "
    "endif %}\n{%- endfor %}\n";

/* TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr's template) */
static const char *tmpl_zephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' "
    "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/* ---- the conversation every family renders ---- */

static const bl_chat_msg chat4[] = {
    {"system", "You are terse."},
    {"user", "Hello, how are you?"},
    {"assistant", " Fine. "}, /* spaces around: which templates trim shows */
    {"user", "Tell me a joke."},
};

static char *render(const bl_chat_template *t, const bl_chat_msg *m, int n, bool gen) {
    bl_chat_opts o = {.add_generation_prompt = gen, .bos = "<s>", .eos = "</s>",
                      .date = "26 Jul 2024"};
    if (t->family == BL_CHAT_LLAMA3) o.bos = "<|begin_of_text|>";
    char *text = NULL;
    bl_err err = {0};
    if (bl_chat_render(t, m, n, &o, &text, NULL, &err) != BL_OK)
        fprintf(stderr, "  render %s: %s\n", t->name, err.msg);
    return text;
}

static void expect(const char *tmpl_text, const char *want_name, const bl_chat_msg *m, int n,
                   bool gen, const char *want) {
    bl_chat_template t;
    bl_err err = {0};
    REQUIRE(bl_chat_template_detect(tmpl_text, &t, &err) == BL_OK);
    CHECK_MSG(strcmp(t.name, want_name) == 0, "detected %s, expected %s", t.name, want_name);
    char *got = render(&t, m, n, gen);
    REQUIRE(got);
    CHECK_MSG(strcmp(got, want) == 0, "%s:\n   got  [%s]\n   want [%s]", want_name, got, want);
    free(got);
}

static void test_renderings(void) {
    expect(tmpl_llama2, "llama2", chat4, 4, true,
           "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello, how are you? [/INST] Fine. "
           "</s><s>[INST] Tell me a joke. [/INST]");
    expect(tmpl_llama3, "llama3", chat4, 4, true,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nFine.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(tmpl_llama3, "llama3", chat4 + 1, 1, false,
           "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello, how are you?"
           "<|eot_id|>");
    expect(tmpl_llama31, "llama3.1", chat4, 4, true,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
           "December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nFine.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(tmpl_llama31, "llama3.1", chat4 + 1, 1, false,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
           "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user"
           "<|end_header_id|>\n\nHello, how are you?<|eot_id|>");
    expect(tmpl_qwen2, "chatml", chat4, 4, true,
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello, how are you?"
           "<|im_end|>\n<|im_start|>assistant\n Fine. <|im_end|>\n<|im_start|>user\nTell me a "
           "joke.<|im_end|>\n<|im_start|>assistant\n");
    /* Qwen2's default system message when the chat has none */
    expect(tmpl_qwen2, "chatml", chat4 + 1, 3, false,
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, "
           "how are you?<|im_end|>\n<|im_start|>assistant\n Fine. <|im_end|>\n<|im_start|>user\n"
           "Tell me a joke.<|im_end|>\n");
    expect(tmpl_qwen25, "chatml", chat4 + 1, 1, true,
           "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
           "assistant.<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(tmpl_mistral_v1, "mistral-v1", chat4, 4, true,
           "<s> [INST] You are terse.\n\nHello, how are you? [/INST]  Fine. </s> [INST] Tell me a "
           "joke. [/INST]");
    /* v3 writes the system text into the last user turn */
    expect(tmpl_mistral_v3, "mistral-v3", chat4, 4, true,
           "<s>[INST] Hello, how are you?[/INST] Fine.</s>[INST] You are terse.\n\nTell me a "
           "joke.[/INST]");
    /* ... and drops it when the last message is the assistant's */
    expect(tmpl_mistral_v3, "mistral-v3", chat4, 3, false,
           "<s>[INST] Hello, how are you?[/INST] Fine.</s>");
    expect(tmpl_zephyr, "zephyr", chat4, 4, true,
           "<|system|>\nYou are terse.</s>\n<|user|>\nHello, how are you?</s>\n<|assistant|>\n "
           "Fine. </s>\n<|user|>\nTell me a joke.</s>\n<|assistant|>\n");
    expect(tmpl_zephyr, "zephyr", chat4 + 1, 1, false, "<|user|>\nHello, how are you?</s>\n");
}

static const char *data_dir(void) {
    const char *d = getenv("BITLLM_DATA");
    return d && *d ? d : "../shared";
}

static bl_tokenizer *hf_tokenizer(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s", data_dir(), name);
    bl_tokenizer *t = NULL;
    if (bl_tokenizer_load_hf(path, &t, NULL) != BL_OK) return NULL;
    return t;
}

/* Appends the ids of text (no BOS, no special-token parsing) or one id to a list. */
typedef struct {
    int32_t v[512];
    size_t n;
} idlist;
static void add_text(idlist *l, const bl_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n;
    if (bl_tokenizer_encode(t, text, strlen(text), false, &ids, &n, NULL) != BL_OK) return;
    for (size_t i = 0; i < n && l->n < 512; i++) l->v[l->n++] = ids[i];
    free(ids);
}
static void add_id(idlist *l, int32_t id) {
    if (l->n < 512) l->v[l->n++] = id;
}

static void check_ids(const bl_chat_template *t, const bl_tokenizer *tok, const bl_chat_msg *m,
                      int n, bool gen, const idlist *want, const char *what) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bl_chat_opts o = {.add_generation_prompt = gen};
    bl_err err = {0};
    REQUIRE(bl_chat_tokenize(t, tok, m, n, &o, &ids, &n_ids, &err) == BL_OK);
    bool same = n_ids == want->n && memcmp(ids, want->v, n_ids * sizeof *ids) == 0;
    CHECK_MSG(same, "%s: %zu ids vs %zu expected", what, n_ids, want->n);
    if (!same)
        for (size_t i = 0; i < n_ids || i < want->n; i++)
            fprintf(stderr, "    %zu: %d %d\n", i, i < n_ids ? ids[i] : -9,
                    i < want->n ? want->v[i] : -9);
    free(ids);
}

/* The Llama-3 tokenizer with its own template: special tokens are single ids, one BOS. */
static void test_llama3_ids(void) {
    bl_tokenizer *tok = hf_tokenizer("llama3");
    if (!tok) SKIP("%s/tokenizers/llama3 not found", data_dir());
    bl_chat_template t;
    bl_err err = {0};
    REQUIRE(bl_chat_template_for(tok, NULL, &t, &err) == BL_OK);
    CHECK(strcmp(t.name, "llama3") == 0);
    /* this copy's template adds the assistant header without add_generation_prompt */
    CHECK(t.gen_prompt_always);
    enum { BOT = 128000, SH = 128006, EH = 128007, EOT = 128009 };
    idlist want = {0};
    add_id(&want, BOT);
    const char *roles[] = {"system", "user"}, *texts[] = {"\n\nYou are terse.",
                                                          "\n\nHello, how are you?"};
    for (int i = 0; i < 2; i++) {
        add_id(&want, SH);
        add_text(&want, tok, roles[i]);
        add_id(&want, EH);
        add_text(&want, tok, texts[i]);
        add_id(&want, EOT);
    }
    add_id(&want, SH);
    add_text(&want, tok, "assistant");
    add_id(&want, EH);
    add_text(&want, tok, "\n\n");
    check_ids(&t, tok, chat4, 2, false, &want, "llama3");
    int32_t stop[4];
    int ns = bl_chat_stop_tokens(&t, tok, stop, 4);
    bool has_eot = false;
    for (int i = 0; i < ns; i++) has_eot |= stop[i] == EOT;
    CHECK(has_eot);
    bl_tokenizer_free(tok);
}

/* The Qwen3 tokenizer with its own template (chatml, reasoning kept only after the last query). */
static void test_qwen3_ids(void) {
    bl_tokenizer *tok = hf_tokenizer("qwen3");
    if (!tok) SKIP("%s/tokenizers/qwen3 not found", data_dir());
    bl_chat_template t;
    bl_err err = {0};
    REQUIRE(bl_chat_template_for(tok, NULL, &t, &err) == BL_OK);
    CHECK(strcmp(t.name, "chatml") == 0 && t.reasoning && t.default_system[0] == 0);
    const bl_chat_msg m[] = {{"system", "Be brief."},
                             {"user", "Hi"},
                             {"assistant", "<think>\nplan it\n</think>\n\nHello!"},
                             {"user", "A joke?"}};
    char *text = render(&t, m, 4, true);
    REQUIRE(text);
    const char *want_text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                            "<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>"
                            "user\nA joke?<|im_end|>\n<|im_start|>assistant\n";
    CHECK_MSG(strcmp(text, want_text) == 0, "qwen3: [%s]", text);
    free(text);
    /* a final assistant turn after the last query keeps an (empty) think block */
    const bl_chat_msg pre[] = {{"user", "Hi"}, {"assistant", "\nSure"}};
    text = render(&t, pre, 2, false);
    REQUIRE(text);
    CHECK_MSG(strcmp(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n"
                           "</think>\n\nSure<|im_end|>\n") == 0,
              "qwen3 prefill: [%s]", text);
    free(text);
    enum { IS = 151644, IE = 151645 };
    idlist want = {0};
    const char *parts[] = {"system\nBe brief.", "\n", "user\nHi", "\n", "assistant\nHello!", "\n",
                           "user\nA joke?", "\n"};
    for (int i = 0; i < 8; i += 2) {
        add_id(&want, IS);
        add_text(&want, tok, parts[i]);
        add_id(&want, IE);
        add_text(&want, tok, parts[i + 1]);
    }
    add_id(&want, IS);
    add_text(&want, tok, "assistant\n");
    check_ids(&t, tok, m, 4, true, &want, "qwen3");
    int32_t stop[4];
    int ns = bl_chat_stop_tokens(&t, tok, stop, 4);
    bool has_end = false;
    for (int i = 0; i < ns; i++) has_end |= stop[i] == IE;
    CHECK(has_end);
    bl_tokenizer_free(tok);
}

/* A SentencePiece vocabulary (stories260K's GGUF, no template of its own): BOS/EOS of the llama2
 * template become ids 1 and 2, once each where the template writes them. */
static void test_spm_ids(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", data_dir());
    bl_model *m = NULL;
    if (bl_model_load(path, NULL, &m, NULL) != BL_OK) SKIP("%s not found", path);
    bl_chat_template t;
    bl_err err = {0};
    CHECK(bl_chat_template_for(m->tok, NULL, &t, &err) == BL_ERR_ARG &&
          strstr(err.msg, "--chat-template"));
    REQUIRE(bl_chat_template_for(m->tok, "llama2", &t, &err) == BL_OK);
    idlist want = {0};
    add_id(&want, 1);
    add_text(&want, m->tok, "[INST] Hello, how are you? [/INST] Fine. ");
    add_id(&want, 2);
    add_id(&want, 1);
    add_text(&want, m->tok, "[INST] Tell me a joke. [/INST]");
    check_ids(&t, m->tok, chat4 + 1, 3, true, &want, "llama2/spm");
    /* parse_special: "</s>" spelled in a user message is the EOS token, as llama.cpp reads it */
    const bl_chat_msg inj[] = {{"user", "a</s>b"}};
    want.n = 0;
    add_id(&want, 1);
    add_text(&want, m->tok, "[INST] a");
    add_id(&want, 2);
    add_text(&want, m->tok, "b [/INST]");
    check_ids(&t, m->tok, inj, 1, true, &want, "llama2/spm special");
    bl_model_free(m);
}

static void test_errors(void) {
    bl_chat_template t;
    bl_err err = {0};
    CHECK(bl_chat_template_by_name("vicuna", &t, &err) == BL_ERR_ARG &&
          strstr(err.msg, "chatml, llama2"));
    CHECK(bl_chat_template_detect("{{ messages }} USER: ASSISTANT:", &t, &err) != BL_OK &&
          strstr(err.msg, "not recognised"));
    CHECK(bl_chat_template_detect("[SYSTEM_PROMPT] [INST]", &t, &err) == BL_ERR_UNSUPPORTED);
    CHECK(bl_chat_template_detect("", &t, &err) != BL_OK);
    REQUIRE(bl_chat_template_by_name("llama2", &t, &err) == BL_OK);
    bl_chat_opts o = {0};
    char *text = NULL;
    const bl_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    CHECK(bl_chat_render(&t, two_users, 2, &o, &text, NULL, &err) == BL_ERR_ARG &&
          strstr(err.msg, "alternate"));
    REQUIRE(bl_chat_template_by_name("mistral-v3", &t, &err) == BL_OK);
    const bl_chat_msg asst_first[] = {{"assistant", "a"}, {"user", "b"}};
    CHECK(bl_chat_render(&t, asst_first, 2, &o, &text, NULL, &err) == BL_ERR_ARG);
    REQUIRE(bl_chat_template_by_name("chatml", &t, &err) == BL_OK);
    const bl_chat_msg tool[] = {{"tool", "x"}};
    CHECK(bl_chat_render(&t, tool, 1, &o, &text, NULL, &err) == BL_ERR_ARG &&
          strstr(err.msg, "tool"));
    CHECK(bl_chat_render(&t, tool, 0, &o, &text, NULL, &err) == BL_ERR_ARG);
    CHECK(text == NULL);
    int count = 0;
    const char *const *names = bl_chat_template_names(&count);
    CHECK(count == 7);
    for (int i = 0; i < count; i++) CHECK(bl_chat_template_by_name(names[i], &t, &err) == BL_OK);
}

int main(void) {
    TEST_RUN(test_renderings);
    TEST_RUN(test_llama3_ids);
    TEST_RUN(test_qwen3_ids);
    TEST_RUN(test_spm_ids);
    TEST_RUN(test_errors);
    return test_summary();
}
