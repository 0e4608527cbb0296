/* bitllm tokenize: text → token ids with a model's (or a bare tokenizer.json's) tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cli_util.h"

/* A tokenizer.json file (told by content), or a directory with tokenizer.json and no
 * config.json. */
static bool is_bare_tokenizer(const char *path) {
    bl_file_kind kind;
    if (bl_detect_file(path, &kind, NULL, 0, NULL) != BL_OK) return false;
    if (kind == BL_FILE_JSON) return true;
    struct stat st;
    if (kind != BL_FILE_DIR) return false;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", path);
    if (stat(p, &st) == 0) return false;
    snprintf(p, sizeof p, "%s/tokenizer.json", path);
    return stat(p, &st) == 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *file = NULL, *prompt = NULL, *tokp = NULL;
    bool bos = false, json = false;
    const cli_opt opts[] = {
        {"file", 'f', OPT_STR, &file, "FILE", "text file to tokenize", CLI_ANY},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "text to tokenize (instead of -f)", CLI_ANY},
        {"bos", 0, OPT_FLAG, &bos, NULL, "prepend the BOS token", CLI_ANY},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer (llama2.c .bin or tokenizer.json)",
         CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...]} on stdout", CLI_ANY},
    };
    const cli_spec spec = {"tokenize", "MODEL|TOKENIZER",
                           "Encode text to token ids. MODEL is a model directory, .gguf or .bin; "
                           "a tokenizer.json (or a directory holding only one) also works.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!file == !prompt) return cli_errorf("tokenize", "give exactly one of -f FILE or -p TEXT");

    bl_err err = {0};
    bl_tokenizer *tok = NULL;
    bl_model *m = NULL;
    if (is_bare_tokenizer(pos[0])) {
        if (tokp) {
            cli_errorf("tokenize", "--tokenizer has no effect when %s is itself a tokenizer",
                       pos[0]);
            return 2;
        }
        if (bl_tokenizer_load_hf(pos[0], &tok, &err) != BL_OK) return cli_error("tokenize", &err);
    } else {
        m = cli_load_model(pos[0], tokp);
        if (!m) return 1;
        tok = m->tok;
        if (!tok) {
            bl_model_free(m);
            return cli_errorf("tokenize", "%s has no tokenizer; pass --tokenizer FILE", pos[0]);
        }
    }
    size_t len = prompt ? strlen(prompt) : 0;
    char *text = prompt ? NULL : cli_read_text("tokenize", file, &len);
    int rc = 1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (prompt || text) {
        if (bl_tokenizer_encode(tok, prompt ? prompt : text, len, bos, &ids, &n, &err) != BL_OK) {
            cli_error("tokenize", &err);
        } else {
            rc = 0;
            if (json) {
                cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "ids");
                for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
                cli_print_json(o);
            } else {
                for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
                printf("\n");
                fprintf(stderr, "%zu tokens\n", n);
            }
        }
    }
    free(ids);
    free(text);
    if (m)
        bl_model_free(m);
    else
        bl_tokenizer_free(tok);
    return rc;
}
