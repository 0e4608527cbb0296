#!/usr/bin/env python3
"""Sends N malformed or random HTTP requests to a bitllm server (127.0.0.1:PORT), each on its own
connection with short timeouts, from a fixed seed. Prints the count of each outcome (HTTP status,
'timeout', 'closed') as JSON. The server must stay up; the calling test checks that afterwards.

usage: serve_fuzz.py PORT N SEED [TIME_LIMIT_S]"""
import json
import random
import socket
import sys
import time

PATHS = ["/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/", "/v1",
         "/v1/completions/x", "/%00", "/" + "a" * 3000, "/v1/chat/completions?x=1", "*",
         "/v1/models/x", "/v1/models/", "/tokenize", "/detokenize"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "post", ""]
VALUES = [None, True, False, 0, -1, 1, 2, 16, 1e9, -1e300, 1e300, 0.5, 3.7, "", "x", "\u00e9",
          "\ud83d\ude00", [], [1, 2], [[1]], {}, {"a": 1}, "NaN", 2 ** 63, -2 ** 63, "\x00"]
KEYS = ["content", "tokens", "add_special", "with_pieces", "prompt", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "n",
        "stream", "stream_options", "echo", "logprobs", "model", "ignore_eos", "tools",
        "max_completion_tokens", "response_format", "presence_penalty", "suffix", "best_of"]


def random_message(r):
    m = {}
    if r.random() < 0.9:
        m["role"] = r.choice(["user", "system", "assistant", "tool", "developer", 5, None, ""])
    if r.random() < 0.9:
        m["content"] = r.choice(["Hi", "", 7, None, [{"type": "text", "text": "a"}],
                                 [{"type": "image_url"}], "x" * r.randint(0, 300)])
    return m


def random_body(r):
    """A JSON body near the valid ones, or broken text."""
    chat = r.random() < 0.5
    d = {"max_tokens": r.choice([1, 2, 3, 4])}
    if chat:
        d["messages"] = [random_message(r) for _ in range(r.randint(0, 3))]
    else:
        d["prompt"] = r.choice(["Once", "", [1, 2, 3], [[5, 6]], [1e9], ["a", "b"], 3, None,
                                "\u00e9\u00e8 " * r.randint(0, 50)])
    for _ in range(r.randint(0, 4)):
        d[r.choice(KEYS)] = r.choice(VALUES)
    if "stream" in d and d["stream"] is True:
        d["max_tokens"] = 2
    for k in ("max_tokens", "max_completion_tokens"):  # keep generations short
        if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool) and d[k] > 4:
            d[k] = 4
    text = json.dumps(d, allow_nan=True)
    mode = r.random()
    if mode < 0.15:
        cut = r.randint(0, len(text))
        text = text[:cut]
    elif mode < 0.3:
        b = bytearray(text.encode())
        for _ in range(r.randint(1, 5)):
            if b:
                b[r.randrange(len(b))] = r.randrange(256)
        return chat, bytes(b)
    elif mode < 0.35:
        text = "[" * r.randint(1, 5000)
    return chat, text.encode("utf-8", "surrogatepass")


def random_request(r):
    kind = r.random()
    if kind < 0.08:  # raw garbage
        return bytes(r.randrange(256) for _ in range(r.randint(0, 2000)))
    if kind < 0.16:  # a request line or headers broken
        return r.choice([b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\r\n\r\n\r\n",
                         b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                         b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                         b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 20000 + b"\r\n\r\n",
                         b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                         b"GET /health HTTP/1.1\r\n" + b"H: v\r\n" * 500 + b"\r\n"])
    method = r.choice(METHODS) if kind < 0.3 else ("POST" if kind < 0.9 else "GET")
    path = r.choice(PATHS) if kind < 0.4 else None
    chat, body = random_body(r)
    if path is None:
        path = "/v1/chat/completions" if chat else "/v1/completions"
    length = len(body)
    if r.random() < 0.05:
        length += r.choice([-3, 1])  # a Content-Length that does not match
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" % (
        method, path)
    if r.random() < 0.1:
        head += "Authorization: Bearer %s\r\n" % r.choice(["", "x", "k" * 200])
    head += "Content-Length: %d\r\nConnection: close\r\n\r\n" % max(length, 0)
    return head.encode() + body


def send(port, data, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = b""
        while len(got) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        if got.startswith(b"HTTP/1."):
            return got.split(b" ", 2)[1].decode(errors="replace")
        return "closed"
    except socket.timeout:
        return "timeout"
    except OSError:
        return "closed"
    finally:
        s.close()


def main():
    port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    limit = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    r = random.Random(seed)
    counts, t0, sent = {}, time.time(), 0
    for _ in range(n):
        if time.time() - t0 > limit:
            break
        out = send(port, random_request(r), 2.0)
        counts[out] = counts.get(out, 0) + 1
        sent += 1
    print(json.dumps({"sent": sent, "seconds": round(time.time() - t0, 1), "outcomes": counts}))


if __name__ == "__main__":
    main()
