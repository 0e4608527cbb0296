/* bitllm chat: a conversation in the terminal. Each line read is a user message; the answer is
 * streamed as it is generated. /reset forgets the conversation, /exit (or end of input) quits,
 * Ctrl-C stops the current answer only. When stdin is not a terminal the same runs without
 * prompts or escape codes, one message per line, so a pipe drives it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/serve.h"
#include "cli.h"
#include "cli_util.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static bool print_text(void *ctx, const char *text, size_t len) {
    (void)ctx;
    if (interrupted) return false;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) return false;
    return true;
}

int cmd_chat(int argc, char **argv) {
    const char *tokp = NULL, *system = NULL, *tmpl = NULL;
    const char *tables_s = NULL, *kv_s = NULL;
    int ctx = 0, max_tokens = 0, threads = 0, top_k = 0;
    double temp = 0.8, top_p = 0.9, min_p = 0.0;
    cli_penalties pen = cli_penalties_default();
    uint64_t seed = 42;
    uint64_t given = 0;
    const cli_opt opts[] = {
        {"system", 0, OPT_STR, &system, "TEXT", "system message", CLI_ANY},
        {"chat-template", 0, OPT_STR, &tmpl, "NAME",
         "chatml, llama2, llama3, llama3.1, mistral-v1, mistral-v3 or zephyr (default: from "
         "the model)", CLI_ANY},
        {"ctx", 0, OPT_INT, &ctx, "N", "context tokens (default: model's, at most 4096)",
         CLI_MIN(16)},
        {"n", 'n', OPT_INT, &max_tokens, "N", "tokens per answer at most (default: no limit)",
         CLI_MIN(1)},
        {"temp", 0, OPT_FLOAT, &temp, "T", "temperature, 0 = greedy (default 0.8)",
         CLI_MIN(0)},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        CLI_DECODE_OPTS(top_p, top_k, min_p, seed, tokp, threads),
        CLI_PENALTY_OPTS(pen),
    };
    const cli_spec spec = {"chat", "MODEL",
                           "Chat with a model. Type a message and Enter; /reset forgets the "
                           "conversation, /exit quits, Ctrl-C stops an answer. Reads lines from "
                           "stdin when it is not a terminal. Answers are valid UTF-8.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if ((r = cli_check_sampling(&spec, temp)) != CLI_OK) return cli_exit_code(r);
    if ((r = cli_check_penalties(&spec, &pen)) != CLI_OK) return cli_exit_code(r);
    bl_load_opts lo = {.tokenizer_path = tokp};
    bl_model *m = cli_load_model_tables("chat", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) return r;
    bl_chat_session_opts so = {.system = system, .chat_template = tmpl, .ctx = ctx,
                               .max_tokens = max_tokens, .temperature = (float)temp,
                               .top_p = (float)top_p, .top_k = top_k, .min_p = (float)min_p,
                               .seed = seed, .n_threads = threads,
                               .penalties = cli_penalties_value(&pen)};
    bl_chat_session *s = NULL;
    bl_err err = {0};
    if (bl_chat_session_new(m, &so, &s, &err) != BL_OK) {
        cli_error("chat", &err);
        bl_model_free(m);
        return 1;
    }
    const bool tty = isatty(0), color = tty && isatty(1);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    if (tty)
        fprintf(stderr, "bitllm chat: %s, template %s. /reset forgets, /exit quits, Ctrl-C stops "
                        "an answer.\n", m->path, bl_chat_session_template(s));
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) {
            fputs(color ? "\033[1m> \033[0m" : "> ", stdout);
            fflush(stdout);
        }
        interrupted = 0;
        errno = 0;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            if (errno == EINTR && interrupted) { /* Ctrl-C at the prompt: a fresh prompt */
                clearerr(stdin);
                if (tty) fputc('\n', stdout);
                continue;
            }
            if (tty) fputc('\n', stdout);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            bl_chat_session_reset(s);
            fprintf(stderr, "[conversation cleared]\n");
            continue;
        }
        if (line[0] == '/' && !strpbrk(line, " \t")) { /* one word: meant as a command */
            fprintf(stderr, "[unknown command %s: /reset forgets the conversation, /exit quits]\n",
                    line);
            continue;
        }
        if (memchr(line, 0, (size_t)len)) { /* the message would end at the NUL */
            cli_errorf("chat", "stdin: a line holds a NUL byte (offset %zu); not sent",
                       strlen(line));
            if (!tty) {
                rc = 1;
                break;
            }
            continue;
        }
        int dropped = 0;
        if (bl_chat_session_say(s, line, print_text, NULL, &dropped, &err) != BL_OK) {
            cli_error("chat", &err);
            if (!tty) {
                rc = 1;
                break;
            }
            continue;
        }
        if (interrupted) fputs(color ? " \033[2m[stopped]\033[0m" : " [stopped]", stdout);
        fputc('\n', stdout);
        if (fflush(stdout) != 0) {
            rc = cli_errorf("chat", "cannot write to stdout");
            break;
        }
        if (dropped)
            fprintf(stderr, "[context full: dropped the %d oldest message%s]\n", dropped,
                    dropped == 1 ? "" : "s");
    }
    free(line);
    bl_chat_session_free(s);
    bl_model_free(m);
    return rc;
}
