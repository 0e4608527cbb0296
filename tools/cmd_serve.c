/* bitllm serve: the OpenAI-compatible HTTP server (src/serve). SIGTERM or Ctrl-C drains: running
 * and queued requests finish, new ones get 503, then the process exits 0; a second signal ends it
 * at once. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bitllm/serve.h"
#include "cli.h"
#include "cli_util.h"

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    char when[32];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%H:%M:%S", localtime_r(&now, &tmv));
    fprintf(stderr, "[%s] %s\n", when, line);
}

int cmd_serve(int argc, char **argv) {
    bl_server_opts so;
    bl_server_opts_default(&so);
    const char *tokp = NULL, *host = so.host, *api_key = NULL, *tmpl = NULL, *alias = NULL,
               *cors = NULL;
    const char *tables_s = NULL, *kv_s = NULL;
    int port = so.port, parallel = so.parallel, ctx = 0, queue = so.queue, threads = 0;
    double max_body = (double)so.max_body;
    const cli_opt opts[] = {
        {"host", 0, OPT_STR, &host, "ADDR", "address to listen on (default 127.0.0.1)", CLI_ANY},
        {"port", 0, OPT_INT, &port, "N", "port (default 8080; 0 = any free port, printed)",
         CLI_RANGE(0, 65535)},
        {"api-key", 0, OPT_STR, &api_key, "KEY", "require \"Authorization: Bearer KEY\"",
         CLI_ANY},
        {"cors", 0, OPT_STR, &cors, "ORIGIN",
         "let browser pages from ORIGIN call the server (\"*\": any page)", CLI_ANY},
        {"parallel", 0, OPT_INT, &parallel, "N", "sequences decoded together (default 4)",
         CLI_RANGE(1, 256)},
        {"ctx", 0, OPT_INT, &ctx, "N", "tokens per sequence (default: model's, at most 2048)",
         CLI_MIN(16)},
        {"queue", 0, OPT_INT, &queue, "N", "requests waiting for a slot before 503 (default 64)",
         CLI_MIN(0)},
        {"max-body", 0, OPT_FLOAT, &max_body, "BYTES", "request body limit (default 1048576)",
         CLI_RANGE(64, 1e12)},
        {"chat-template", 0, OPT_STR, &tmpl, "NAME",
         "chatml, llama2, llama3, llama3.1, mistral-v1, mistral-v3 or zephyr (default: from "
         "the model)", CLI_ANY},
        {"alias", 0, OPT_STR, &alias, "ID", "model id reported by /v1/models", CLI_ANY},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"threads", 't', OPT_INT, &threads, "T",
         "threads (default: OMP_NUM_THREADS or all cores)", CLI_THREADS},
    };
    const cli_spec spec = {"serve", "MODEL",
                           "OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions "
                           "(streamed or not), /v1/models, /health, with continuous batching.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    so.host = host;
    so.port = port;
    so.api_key = api_key;
    so.cors = cors;
    so.parallel = parallel;
    so.ctx = ctx;
    so.queue = queue;
    so.n_threads = threads;
    so.max_body = (size_t)max_body;
    so.chat_template = tmpl;
    so.model_id = alias;
    so.log = log_line;
    bl_load_opts lo = {.tokenizer_path = tokp};
    bl_model *m = cli_load_model_tables("serve", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) return r;
    /* Signals go to this thread only, through sigwait; every server thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    bl_server *srv = NULL;
    bl_err err = {0};
    if (bl_server_start(m, &so, &srv, &err) != BL_OK) {
        cli_error("serve", &err);
        bl_model_free(m);
        return 1;
    }
    const bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "bitllm serve: listening on http://%s%s%s:%d (%d parallel, %d tokens each)\n",
            v6 ? "[" : "", host, v6 ? "]" : "", bl_server_port(srv), parallel,
            bl_server_ctx(srv));
    fflush(stderr);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "bitllm serve: %s: finishing the running requests (again to stop now)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL); /* a second signal ends the process */
    bl_server_stop(srv, true);
    bl_server_free(srv);
    bl_model_free(m);
    fprintf(stderr, "bitllm serve: stopped\n");
    return 0;
}
