/* Serving benchmark client: C concurrent clients stream completions from a running
 * `bitllm serve` and measure what they receive. Each client sends R requests one after another
 * (a short prompt, "ignore_eos": true so every answer is exactly K tokens, each client its own
 * seed) and timestamps every token event of the stream (the server sends one per token).
 *
 * Reported: aggregate decode throughput (tokens received by all clients / wall time from the
 * first request sent to the last token received), the time per token seen by a client (gaps
 * between consecutive token events of one answer: p50 and p99 over all of them), and the time to
 * the first token (p50). Validates first: every answer must have exactly K token events and end
 * with finish_reason "length" and data: [DONE].
 *
 *   bench_serve --port P [--clients C] [--requests R] [--tokens K] [--prompt-tokens P] [--json]
 *
 * bench/serve_bench.sh runs it for several models and client counts and prints the table of
 * docs/serve.md. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bitllm/core.h"

typedef struct {
    int port, id, requests, tokens, prompt_tokens;
    double *gaps;          /* requests × (tokens − 1) */
    double *ttft;          /* requests */
    int n_gaps, received, bad;
    double t_first_send, t_last_token;
    char error[256];
} client;

static pthread_barrier_t start;

/* First occurrence of needle (n bytes) in hay (h bytes), or NULL. */
static char *find(const char *hay, size_t h, const char *needle, size_t n) {
    for (size_t i = 0; i + n <= h; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) return (char *)hay + i;
    return NULL;
}

/* One streamed request; appends its token gaps. Returns the tokens received, -1 on error. */
static int one_request(client *c, int r) {
    char body[8192], req[8704];
    int bl = snprintf(body, sizeof body, "{\"prompt\":[1");
    for (int i = 1; i < c->prompt_tokens; i++) /* byte-range ids: valid in any vocabulary */
        bl += snprintf(body + bl, sizeof body - (size_t)bl, ",%d", 3 + (i * 37 + c->id) % 256);
    bl += snprintf(body + bl, sizeof body - (size_t)bl,
                   "],\"max_tokens\":%d,\"ignore_eos\":true,\"stream\":true,"
                   "\"temperature\":1,\"seed\":%d}",
                   c->tokens, 1000 * c->id + r);
    /* HTTP/1.0: the stream comes back plain, not chunked, and ends with the connection */
    int rl = snprintf(req, sizeof req,
                      "POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nContent-Length: %d\r\n\r\n%s", bl, body);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(c->error, sizeof c->error, "cannot connect to 127.0.0.1:%d", c->port);
        if (fd >= 0) close(fd);
        return -1;
    }
    const double t0 = bl_time_s();
    if (c->t_first_send == 0) c->t_first_send = t0;
    if (send(fd, req, (size_t)rl, 0) != rl) {
        close(fd);
        return -1;
    }
    char *buf = malloc(1 << 20);
    size_t n = 0, scan = 0;
    int got = 0, finished = 0, done = 0, body_at = 0;
    double last = 0;
    for (;;) {
        if (n + 65536 > (1 << 20)) { /* keep the unscanned tail only */
            memmove(buf, buf + scan, n - scan);
            n -= scan;
            scan = 0;
        }
        ssize_t k = recv(fd, buf + n, 65536, 0);
        if (k <= 0) break;
        const double now = bl_time_s();
        n += (size_t)k;
        if (!body_at) { /* the events start after the headers */
            char *h = find(buf, n, "\r\n\r\n", 4);
            if (!h) continue;
            body_at = 1;
            scan = (size_t)(h - buf) + 4;
        }
        for (char *e; (e = find(buf + scan, n - scan, "\n\n", 2)); scan = (size_t)(e - buf) + 2) {
            const char *ev = buf + scan;
            const size_t len = (size_t)(e - ev);
            if (len >= 12 && memcmp(ev, "data: [DONE]", 12) == 0) done = 1;
            if (len < 6 || memcmp(ev, "data: {", 7) != 0) continue;
            if (find(ev, len, "\"finish_reason\":null", 20)) {
                if (got == 0) c->ttft[r] = now - t0;
                else c->gaps[c->n_gaps++] = now - last;
                last = now;
                got++;
            } else if (find(ev, len, "\"finish_reason\":\"length\"", 24)) {
                finished = 1;
            }
        }
    }
    close(fd);
    free(buf);
    if (got > 0 && last > c->t_last_token) c->t_last_token = last;
    if (got != c->tokens || !finished || !done) {
        snprintf(c->error, sizeof c->error, "client %d request %d: %d token events (want %d), "
                 "finish %s, [DONE] %s", c->id, r, got, c->tokens, finished ? "ok" : "missing",
                 done ? "ok" : "missing");
        return -1;
    }
    return got;
}

static void *run_client(void *arg) {
    client *c = arg;
    pthread_barrier_wait(&start);
    for (int r = 0; r < c->requests; r++) {
        int got = one_request(c, r);
        if (got < 0) {
            c->bad++;
            break;
        }
        c->received += got;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
    int port = 0, clients = 1, requests = 2, tokens = 32, prompt_tokens = 16;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = 1;
        else if (v && !strcmp(a, "--port")) port = atoi(argv[++i]);
        else if (v && !strcmp(a, "--clients")) clients = atoi(argv[++i]);
        else if (v && !strcmp(a, "--requests")) requests = atoi(argv[++i]);
        else if (v && !strcmp(a, "--tokens")) tokens = atoi(argv[++i]);
        else if (v && !strcmp(a, "--prompt-tokens")) prompt_tokens = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_serve --port P [--clients C] [--requests R] "
                            "[--tokens K] [--prompt-tokens P] [--json]\n");
            return 2;
        }
    }
    if (port <= 0 || clients < 1 || clients > 256 || requests < 1 || tokens < 2 ||
        prompt_tokens < 1 || prompt_tokens > 1000) {
        fprintf(stderr, "bench_serve: need --port, 1-256 clients, tokens >= 2 and 1-1000 "
                        "prompt tokens\n");
        return 2;
    }
    client *cs = calloc((size_t)clients, sizeof *cs);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    for (int i = 0; i < clients; i++) {
        cs[i] = (client){.port = port, .id = i, .requests = requests, .tokens = tokens,
                         .prompt_tokens = prompt_tokens};
        cs[i].gaps = calloc((size_t)requests * (size_t)tokens, sizeof(double));
        cs[i].ttft = calloc((size_t)requests, sizeof(double));
    }
    pthread_barrier_init(&start, NULL, (unsigned)clients);
    for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, run_client, &cs[i]);
    for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
    double t0 = 1e300, t1 = 0;
    int total = 0, n_gaps = 0, bad = 0;
    double *gaps = calloc((size_t)clients * (size_t)requests * (size_t)tokens, sizeof(double));
    double *ttft = calloc((size_t)clients * (size_t)requests, sizeof(double));
    for (int i = 0; i < clients; i++) {
        if (cs[i].bad) {
            fprintf(stderr, "bench_serve: %s\n", cs[i].error);
            bad++;
        }
        if (cs[i].t_first_send < t0) t0 = cs[i].t_first_send;
        if (cs[i].t_last_token > t1) t1 = cs[i].t_last_token;
        total += cs[i].received;
        memcpy(gaps + n_gaps, cs[i].gaps, (size_t)cs[i].n_gaps * sizeof(double));
        n_gaps += cs[i].n_gaps;
        memcpy(ttft + (size_t)i * requests, cs[i].ttft, (size_t)requests * sizeof(double));
    }
    const double wall = t1 - t0, rate = wall > 0 ? total / wall : 0;
    const double p50 = quantile(gaps, n_gaps, 0.5) * 1e3, p99 = quantile(gaps, n_gaps, 0.99) * 1e3;
    const double ft50 = quantile(ttft, clients * requests, 0.5) * 1e3;
    if (json)
        printf("{\"clients\":%d,\"requests\":%d,\"tokens_per_request\":%d,\"tokens\":%d,"
               "\"seconds\":%.3f,\"tok_per_s\":%.3f,\"ms_per_token_p50\":%.3f,"
               "\"ms_per_token_p99\":%.3f,\"ttft_ms_p50\":%.3f,\"failed_clients\":%d}\n",
               clients, requests, tokens, total, wall, rate, p50, p99, ft50, bad);
    else
        printf("%d clients x %d requests x %d tokens: %d tokens in %.2f s = %.2f tok/s; per token "
               "p50 %.1f ms, p99 %.1f ms; first token p50 %.0f ms\n",
               clients, requests, tokens, total, wall, rate, p50, p99, ft50);
    for (int i = 0; i < clients; i++) free(cs[i].gaps), free(cs[i].ttft);
    free(cs), free(th), free(gaps), free(ttft);
    return bad ? 1 : 0;
}
