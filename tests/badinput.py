#!/usr/bin/env python3
"""The bad-input suite: for every loader (safetensors, GGUF, llama2.c, config.json, the shard
index, tokenizer.json, tokenizer.bin, quantized model directories, the eval task files) it makes
truncated, bit-flipped, oversized-dimension and wrong-type files from small good ones (the seed
files of fuzz/corpus) and runs the bitllm command on each (info, tokenize or eval). Every case
must exit non-zero without a signal, print a message naming the file and the problem, and print
no sanitizer report (the suite runs in the ASan/UBSan build too).

    BITLLM_BIN=build/bitllm python3 tests/badinput.py
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SEEDS = os.path.join(ROOT, "fuzz", "corpus")
sys.path.insert(0, os.path.join(ROOT, "fuzz"))
sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
from make_seeds import npy  # noqa: E402  (the seeds' .npy writer)
BIN = os.environ.get("BITLLM_BIN") or os.path.join(ROOT, "build", "bitllm")
DATA = os.environ.get("BITLLM_DATA", os.path.join(ROOT, "..", "shared"))
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")

passed, failed = 0, 0


def seed(target, name):
    with open(os.path.join(SEEDS, target, name), "rb") as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def case(name, argv, *want):
    """Runs bitllm argv; the message must contain every text of want (the file first)."""
    global passed, failed
    r = subprocess.run([BIN] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    err = r.stderr.decode(errors="replace")
    problems = []
    if r.returncode == 0:
        problems.append("exit 0")
    if r.returncode < 0 or r.returncode >= 128:
        problems.append("killed by a signal (rc %d)" % r.returncode)
    if any(s in err for s in SANITIZER):
        problems.append("sanitizer report")
    for w in want:
        if w not in err:
            problems.append("message lacks %r" % w)
    first = err.strip().splitlines()[-1] if err.strip() else ""
    if problems:
        failed += 1
        print("FAIL %s: %s\n     stderr: %s" % (name, "; ".join(problems), err.strip()[-600:]))
    else:
        passed += 1
        print("ok   %s (rc %d: %s)" % (name, r.returncode, first[:150]))


def must_pass(name, ok, detail):
    """A case that must succeed: ok, or a failure with detail."""
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % name)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, detail))


def unpack_model_dir(blob, d):
    n = struct.unpack_from("<I", blob)[0]
    write(os.path.join(d, "config.json"), blob[4:4 + n])
    write(os.path.join(d, "model.safetensors"), blob[4 + n:])
    return d


def flip(data, pos, mask):
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


# ---- safetensors editing ----
def st_split(data):
    n = struct.unpack_from("<Q", data)[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_join(header, body):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


# ---- GGUF editing: offsets of the key/value pairs and tensor infos ----
GSIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_layout(d):
    """{key: (type offset, value offset)} and {tensor: offset of its first dimension}."""
    pos = 24
    n_t, n_kv = struct.unpack_from("<QQ", d, 8)
    kvs, tens = {}, {}

    def rstr(p):
        n = struct.unpack_from("<Q", d, p)[0]
        return d[p + 8:p + 8 + n].decode(), p + 8 + n

    def skip(t, p):
        if t in GSIZE:
            return p + GSIZE[t]
        if t == 8:
            return rstr(p)[1]
        et, n = struct.unpack_from("<IQ", d, p)
        p += 12
        for _ in range(n):
            p = skip(et, p)
        return p

    for _ in range(n_kv):
        k, pos = rstr(pos)
        t = struct.unpack_from("<I", d, pos)[0]
        kvs[k] = (pos, pos + 4)
        pos = skip(t, pos + 4)
    for _ in range(n_t):
        name, pos = rstr(pos)
        nd = struct.unpack_from("<I", d, pos)[0]
        tens[name] = pos + 4
        pos += 4 + 8 * nd + 4 + 8
    return kvs, tens


def gguf_add_kvs(d, kvs_new, align=32):
    """d with the key/value pairs kvs_new (key, GGUF type id, packed value) appended after its
    own, the tensor data moved to the next aligned offset."""
    n_t, n_kv = struct.unpack_from("<QQ", d, 8)
    kvs, tens = gguf_layout(d)
    # the values end where the first tensor info begins: its name (length, bytes), then dims
    first = min(tens, key=lambda t: tens[t])
    kv_end = tens[first] - 4 - len(first.encode()) - 8
    last = max(tens, key=lambda t: tens[t])
    nd = struct.unpack_from("<I", d, tens[last] - 4)[0]
    info_end = tens[last] + 8 * nd + 4 + 8
    data_at = info_end + (-info_end % align)
    extra = b"".join(struct.pack("<Q", len(k.encode())) + k.encode() + struct.pack("<I", t) + v
                     for k, t, v in kvs_new)
    head = d[:16] + struct.pack("<Q", n_kv + len(kvs_new)) + d[24:kv_end] + extra + d[kv_end:info_end]
    return head + b"\0" * (-len(head) % align) + d[data_at:]


def gstr_val(text):
    return struct.pack("<Q", len(text.encode())) + text.encode()


def main():
    if not os.path.exists(BIN):
        print("SKIP: no bitllm binary at %s" % BIN)
        return 77
    tmp = tempfile.mkdtemp(prefix="bitllm_badinput_")
    T = lambda *p: os.path.join(tmp, *p)

    # ---------------- safetensors (a model directory's model.safetensors) ----------------
    hf = unpack_model_dir(seed("model_dir", "ok-llama-f32"), T("hf"))
    st = open(os.path.join(hf, "model.safetensors"), "rb").read()
    hdr, body = st_split(st)
    hlen = struct.unpack_from("<Q", st)[0]

    def st_case(name, data, *want):
        d = T("st-" + name)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "config.json"), open(os.path.join(hf, "config.json"), "rb").read())
        p = write(os.path.join(d, "model.safetensors"), data)
        case("safetensors " + name, ["info", d], p, *want)

    st_case("truncated-4", st[:4], "too small for a safetensors file")
    st_case("truncated-header", st[:8 + hlen // 2], "not a safetensors file")
    st_case("truncated-data", st[:8 + hlen + 100], "beyond the 100 data bytes")
    st_case("flipped-length", flip(st, 6, 0x10), "not a safetensors file")
    st_case("flipped-brace", flip(st, 8, 0x01), "not a safetensors file")
    quote = st.index(b'"dtype"')
    st_case("flipped-quote", flip(st, quote, 0x01), "header is not valid JSON")
    dt = st.index(b'"F32"') + 2
    st_case("flipped-dtype", flip(st, dt, 0x02), "unsupported dtype 'F12'")
    h = json.loads(json.dumps(hdr))
    h["model.embed_tokens.weight"]["shape"] = [32, 1 << 40]
    st_case("oversized-dim", st_join(h, body), "model.embed_tokens.weight", "need")
    h = json.loads(json.dumps(hdr))
    h["model.norm.weight"]["data_offsets"][1] += 1 << 33
    st_case("oversized-offset", st_join(h, body), "model.norm.weight", "data_offsets invalid")
    h = json.loads(json.dumps(hdr))
    h["model.norm.weight"]["shape"] = "16"
    st_case("wrong-type-shape", st_join(h, body), "model.norm.weight", "needs dtype, shape, data_offsets")
    h = json.loads(json.dumps(hdr))
    h["model.norm.weight"]["shape"] = [16.5]
    st_case("wrong-type-float-dim", st_join(h, body), "model.norm.weight", "bad shape[0]")

    # ---------------- GGUF ----------------
    gg = seed("gguf", "ok-llama-f32")
    kvs, tens = gguf_layout(gg)

    def gg_case(name, data, *want):
        p = write(T("gguf", name + ".gguf"), data)
        case("gguf " + name, ["info", p], p, *want)

    gg_case("truncated-3", gg[:3], "not a GGUF file")
    gg_case("truncated-header", gg[:20], "truncated GGUF header")
    gg_case("truncated-kv", gg[:kvs["tokenizer.ggml.tokens"][1] + 30], "tokenizer.ggml.tokens", "past the end")
    gg_case("truncated-data", gg[:len(gg) - 64], "past the end")
    gg_case("flipped-magic", flip(gg, 0, 0x20), "not a GGUF file")
    gg_case("flipped-version", flip(gg, 4, 0x04), "GGUF version 7 not supported")
    gg_case("flipped-n-tensors", flip(gg, 15, 0x10), "n_tensors", "cannot fit")
    gg_case("flipped-n-kv", flip(gg, 23, 0x01), "n_kv", "cannot fit")
    b = bytearray(gg)
    struct.pack_into("<I", b, kvs["llama.embedding_length"][1], 1 << 30)
    gg_case("oversized-embedding-length", bytes(b), "llama.embedding_length = 1073741824 is out of range")
    b = bytearray(gg)
    struct.pack_into("<Q", b, tens["blk.0.attn_q.weight"], 1 << 40)
    gg_case("oversized-tensor-dim", bytes(b), "blk.0.attn_q.weight", "past the end")
    b = bytearray(gg)
    struct.pack_into("<I", b, kvs["tokenizer.ggml.bos_token_id"][1], 9999)
    gg_case("oversized-bos-id", bytes(b), "tokenizer.ggml.bos_token_id = 9999 is not a token id")
    b = bytearray(gg)
    struct.pack_into("<I", b, kvs["tokenizer.ggml.token_type"][1], 6)  # i32 elements -> f32
    gg_case("wrong-type-token-types", bytes(b), "tokenizer.ggml.token_type must hold integers")
    b = bytearray(gg)
    struct.pack_into("<I", b, kvs["llama.block_count"][0], 6)  # u32 -> f32, same width
    gg_case("wrong-type-block-count", bytes(b), "llama.block_count must be an integer")
    b = bytearray(gg)
    struct.pack_into("<I", b, kvs["llama.rope.freq_base"][0], 4)  # f32 -> u32 is fine, -> i8 not
    struct.pack_into("<I", b, kvs["llama.rope.freq_base"][0], 13)
    gg_case("wrong-type-unknown", bytes(b), "llama.rope.freq_base", "unknown value type 13")

    # rope scaling: linear is run (info reports the factor), the others are refused, not ignored
    lin = write(T("gguf", "rope-linear.gguf"), gguf_add_kvs(gg, [
        ("llama.rope.scaling.type", 8, gstr_val("linear")),
        ("llama.rope.scaling.factor", 6, struct.pack("<f", 4.0))]))
    r = subprocess.run([BIN, "info", lin, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    must_pass("gguf rope.scaling.type linear, factor 4: loaded with the factor",
         r.returncode == 0 and json.loads(r.stdout)["config"]["rope_linear"] == 4.0,
         "rc %d, %s %s" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    gg_case("rope-scaling-yarn", gguf_add_kvs(gg, [("llama.rope.scaling.type", 8, gstr_val("yarn"))]),
            "llama.rope.scaling.type = \"yarn\" is not supported (none, linear)")
    gg_case("rope-scaling-linear-no-factor", gguf_add_kvs(gg, [("llama.rope.scaling.type", 8, gstr_val("linear"))]),
            "llama.rope.scaling.factor is missing")
    gg_case("moe-experts", gguf_add_kvs(gg, [("llama.expert_count", 4, struct.pack("<I", 8))]),
            "llama.expert_count = 8: mixture-of-experts models are not supported")
    gg_case("rope-partial", gguf_add_kvs(gg, [("llama.rope.dimension_count", 4, struct.pack("<I", 4))]),
            "llama.rope.dimension_count = 4: RoPE over part of the 8-wide heads is not supported")
    gg_case("rope-scaling-negative", gguf_add_kvs(gg, [("llama.rope.scale_linear", 6, struct.pack("<f", -1.0))]),
            "linear rope scaling factor must be a positive number")

    # BOS as the tokenizer says (tokenizer.ggml.add_bos_token), as llama.cpp: a Qwen-style model
    # with a BOS id that its tokenizer does not prepend scores its text without it (ppl: the first
    # token of each window unscored), one that prepends it scores every token
    qg = seed("gguf", "ok-qwen2-gpt2tok")
    txt = write(T("gguf", "bos.txt"), "abc ab a b c hello\n" * 3)
    got = {}
    for ab in (False, True):
        p = write(T("gguf", "add-bos-%d.gguf" % ab), gguf_add_kvs(qg, [
            ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 2)),
            ("tokenizer.ggml.add_bos_token", 7, struct.pack("<?", ab))]))
        ri = subprocess.run([BIN, "info", p, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        rp = subprocess.run([BIN, "ppl", p, "-f", txt, "--ctx", "16", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        got[ab] = (ri.returncode == 0 and json.loads(ri.stdout)["adds_bos"],
                   rp.returncode == 0 and json.loads(rp.stdout))
    must_pass("gguf add_bos_token false/true: BOS prepended only when the tokenizer says so",
              got[False][0] is False and got[True][0] is True and got[False][1] and got[True][1] and
              got[True][1]["tokens"] == 48 and got[False][1]["tokens"] == 48 - got[False][1]["chunks"],
              repr(got))

    # ---------------- llama2.c checkpoint (with its tokenizer.bin) ----------------
    l2 = seed("llama2c", "ok-v1")
    tokbin = seed("tokenizer_bin", "ok-32")[2:]
    tokp = write(T("l2c", "tok.bin"), tokbin)

    def l2_case(name, data, *want):
        p = write(T("l2c", name + ".bin"), data)
        case("llama2c " + name, ["info", p, "--tokenizer", tokp], p, *want)

    l2_case("truncated-header", l2[:100], "too small for the 256-byte header")
    l2_case("truncated-weights", l2[:len(l2) // 2], "implies")
    l2_case("flipped-version", flip(l2, 4, 0x02), "llama2.c export version 3 not supported")
    l2_case("flipped-shared-flag", flip(l2, 36, 0x02), "shared_classifier flag is 3")
    l2_case("flipped-magic", flip(l2, 0, 0x01), "not a llama2.c checkpoint")
    b = bytearray(l2)
    struct.pack_into("<i", b, 8, 1 << 25)
    l2_case("oversized-dim", bytes(b), "dim = 33554432 is out of range")
    b = bytearray(l2)
    struct.pack_into("<i", b, 16, 100000)  # n_layers: the file is far too short for them
    l2_case("oversized-layers", bytes(b), "100000 layers", "implies")
    legacy = seed("llama2c", "ok-v0-shared")
    b = bytearray(legacy)
    struct.pack_into("<i", b, 20, -(1 << 31))  # vocab_size INT32_MIN
    l2_case("oversized-vocab-legacy", bytes(b), "not a llama2.c checkpoint")
    l2_case("wrong-type-json", seed("config", "ok-llama"), "not a llama2.c checkpoint", "a JSON file?")
    l2_case("wrong-type-tokenizer", tokbin, "not a llama2.c checkpoint", "llama2.c tokenizer.bin")
    l2_case("wrong-type-safetensors", st, "a safetensors file")
    l2_case("wrong-type-npy", seed("npy", "ok-f32-3x4"), "not a llama2.c checkpoint", "a NumPy array?")

    # ---------------- config.json ----------------
    cfg = open(os.path.join(hf, "config.json")).read()

    def cfg_case(name, text, *want):
        d = T("cfg-" + name)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "model.safetensors"), st)
        p = write(os.path.join(d, "config.json"), text)
        case("config.json " + name, ["info", d], p, *want)

    cfg_case("truncated", cfg[:len(cfg) // 2], "not valid JSON")
    cfg_case("flipped-quote", cfg.replace('"hidden_size"', '#hidden_size"', 1), "not valid JSON")
    # cJSON ends a string at \u0000: "llama\u0000 2" would read as "llama"
    cfg_case("nul-escape", cfg.replace('"llama"', '"llama\\u0000 2"', 1), "not valid JSON",
             "a NUL character")
    cfg_case("flipped-digit", cfg.replace('"num_hidden_layers": 1', '"num_hidden_layers": 0', 1),
             "num_hidden_layers = 0 is out of range")
    cfg_case("oversized-hidden", cfg.replace('"hidden_size": 16', '"hidden_size": 10000000', 1),
             "hidden_size = 10000000 is out of range")
    cfg_case("oversized-vocab", cfg.replace('"vocab_size": 32', '"vocab_size": 1073741824', 1),
             "vocab_size = 1073741824 is out of range")
    d = T("cfg-oversized-layers")
    write(os.path.join(d, "config.json"), cfg.replace('"num_hidden_layers": 1', '"num_hidden_layers": 3', 1))
    case("config.json oversized-layers", ["info", d], write(os.path.join(d, "model.safetensors"), st),
         "missing tensor model.layers.1.", "config.json says num_hidden_layers = 3")
    cfg_case("wrong-type-string", cfg.replace('"hidden_size": 16', '"hidden_size": "16"', 1),
             '"hidden_size" must be an integer, got the string "16"')
    cfg_case("wrong-type-float", cfg.replace('"num_hidden_layers": 1', '"num_hidden_layers": 1.5', 1),
             '"num_hidden_layers" must be an integer, got 1.5')
    cfg_case("wrong-type-bool", cfg.replace('"tie_word_embeddings": true', '"tie_word_embeddings": "false"', 1),
             '"tie_word_embeddings" must be true or false')
    cfg_case("missing-fields", cfg.replace('"vocab_size": 32,', "", 1).replace('"intermediate_size": 32,', "", 1),
             "missing required fields intermediate_size, vocab_size")
    cfg_case("other-tool-quantized", cfg.replace('"vocab_size": 32,', '"vocab_size": 32, "quantization_config": '
             '{"quant_method": "gptq", "bits": 4, "group_size": 128},', 1),
             'quantized by another tool (quantization_config.quant_method "gptq")', "unquantized model")

    # ---------------- model.safetensors.index.json ----------------
    sh = T("sharded")
    write(os.path.join(sh, "config.json"), cfg)
    write(os.path.join(sh, "model-1.safetensors"), st)
    wm = {k: "model-1.safetensors" for k in hdr if k != "__metadata__"}
    index = json.dumps({"metadata": {}, "weight_map": wm}, indent=1)

    def idx_case(name, text, *want):
        d = T("idx-" + name)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "config.json"), cfg)
        write(os.path.join(d, "model-1.safetensors"), st)
        p = write(os.path.join(d, "model.safetensors.index.json"), text)
        case("index.json " + name, ["info", d], p, *want)

    idx_case("truncated", index[:len(index) // 2], "not valid JSON")
    idx_case("flipped-brace", index.replace("{", "[", 1), "not valid JSON")
    idx_case("oversized-shard-name", index.replace('"model-1.safetensors"', '"' + "m" * 2000 + '"', 1),
             "has a bad file name")
    idx_case("wrong-type-map", json.dumps({"weight_map": list(wm)}), "non-empty weight_map")
    idx_case("wrong-type-entry", index.replace('"model-1.safetensors"', "7", 1), "has a bad file name")
    idx_case("escaping-shard", index.replace('"model-1.safetensors"', '"../model-1.safetensors"', 1),
             "has a bad file name")
    idx_case("missing-shard", index.replace('"model-1.safetensors"', '"model-2.safetensors"', 1),
             "model-2.safetensors: cannot open")

    # ---------------- tokenizer.json ----------------
    tj = seed("tokenizer_json", "ok-bytelevel").decode()

    def tj_case(name, text, *want):
        p = write(T("tj-" + name, "tokenizer.json"), text)
        case("tokenizer.json " + name, ["tokenize", p, "-p", "hello"], p, *want)

    tj_case("truncated", tj[:len(tj) // 2], "not a tokenizer.json: invalid JSON")
    tj_case("flipped-quote", tj.replace('"model"', '#model"', 1), "invalid JSON")
    tj_case("nul-escape", tj.replace('"hell": 260', '"hell\\u0000o": 260', 1), "a NUL character")
    tj_case("flipped-type", tj.replace('"type": "BPE"', '"type": "BPF"', 1), 'model type "BPF" is not supported')
    tj_case("oversized-id", tj.replace('"hell": 260', '"hell": 1e12', 1), "an id that is not an integer")
    tj_case("oversized-added-id", tj.replace('"id": 261', '"id": 99999999999', 1), "an added token has an id")
    tj_case("wrong-type-merges", tj.replace('"merges": [', '"merges": {"x": [', 1).replace('"he ll"]', '"he ll"]}', 1),
            'no "merges" array')
    tj_case("wrong-type-vocab", json.dumps({"model": {"type": "BPE", "vocab": [1, 2], "merges": []},
                                            "pre_tokenizer": {"type": "ByteLevel"}}), 'no "vocab" object')
    # not JSON, so not a bare tokenizer: tokenize takes it for a model, which it is (cut short)
    tj_case("wrong-kind", seed("gguf", "ok-llama-f32")[:4000], "misaligned or past the end")
    tj_case("wrong-type-flag", tj.replace('"special": true', '"special": "true"', 1),
            '"added_tokens[0].special" must be true or false')
    spm = seed("tokenizer_json", "ok-sentencepiece").decode()
    tj_case("wrong-type-byte-fallback", spm.replace('"byte_fallback": true', '"byte_fallback": 1', 1),
            '"model.byte_fallback" must be true or false')
    tj_case("wrong-type-unk", spm.replace('"unk_token": "<unk>"', '"unk_token": 0', 1),
            '"model.unk_token" must be a string')
    d = T("tj-config")
    write(os.path.join(d, "tokenizer.json"), tj)
    cp = write(os.path.join(d, "tokenizer_config.json"), '{"add_bos_token": "yes"}')
    case("tokenizer_config.json wrong-type", ["tokenize", d, "-p", "hi"], cp,
         '"add_bos_token" must be true or false')
    tj_case("dropout", spm.replace('"byte_fallback": true', '"byte_fallback": true, "dropout": 0.1', 1),
            "model.dropout must be null or 0")

    # ---------------- tokenizer.bin (for the 32-token llama2.c model) ----------------
    l2p = write(T("tb", "model.bin"), l2)

    def tb_case(name, data, *want):
        p = write(T("tb", name + ".bin"), data)
        case("tokenizer.bin " + name, ["info", l2p, "--tokenizer", p], p, *want)

    tb_case("truncated", tokbin[:len(tokbin) // 2], "holds 14 tokens but the model's vocabulary has 32")
    tb_case("truncated-record", tokbin[:len(tokbin) - 1], "has length")
    tb_case("flipped-max-len", struct.pack("<i", 0) + tokbin[4:], "max_token_length 0")
    # token 0's score is -0.0 (00 00 00 80): two flips make it -inf (00 00 80 ff)
    tb_case("flipped-score", flip(flip(tokbin, 4 + 2, 0x80), 4 + 3, 0x7f), "token 0 has a non-finite score")
    b = bytearray(tokbin)
    struct.pack_into("<i", b, 8, 0x7fffffff)
    tb_case("oversized-length", bytes(b), "token 0 has length 2147483647")
    tb_case("wrong-vocabulary-more", tokbin + struct.pack("<fi", 0.0, 3) + b"xyz",
            "holds 33 tokens but the model's vocabulary has 32")
    tb_case("wrong-vocabulary-fewer", tokbin[:len(tokbin) - 10], "holds 31 tokens but the model's vocabulary has 32")
    tb_case("wrong-type-json", tj, "the tokenizer has 262 tokens but the model")
    tb_case("wrong-type-safetensors", st, "not a tokenizer", "a safetensors file?")
    tb_case("wrong-type-npy", seed("npy", "ok-f32-3x4"), "tokenizer: ", "not a tokenizer", "a NumPy array?")
    gone = T("tokbin", "missing.bin")
    case("tokenizer.bin missing", ["info", l2p, "--tokenizer", gone], "tokenizer: " + gone, "cannot open")
    big = os.path.join(DATA, "models", "llama2c-tokenizer", "tokenizer.bin")
    s260 = os.path.join(DATA, "models", "stories260K")
    if os.path.exists(big) and os.path.exists(os.path.join(s260, "stories260K.bin")):
        case("tokenizer.bin 32k for the 512-token stories260K.bin",
             ["info", os.path.join(s260, "stories260K.bin"), "--tokenizer", big], big,
             "holds 32000 tokens but the model's vocabulary has 512")
        case("tokenizer.bin 32k for the 512-token stories260K hf",
             ["tokenize", os.path.join(s260, "hf"), "--tokenizer", big, "-p", "hi"], big,
             "holds 32000 tokens but the model's vocabulary has 512")

    # ---------------- quantized model directories ----------------
    def q_case(name, seedname, edit_cfg=None, edit_st=None, *want, named="model.safetensors"):
        d = unpack_model_dir(seed("model_dir", seedname), T("q-" + name))
        cp, sp = os.path.join(d, "config.json"), os.path.join(d, "model.safetensors")
        if edit_cfg:
            write(cp, edit_cfg(open(cp).read()))
        if edit_st:
            write(sp, edit_st(open(sp, "rb").read()))
        case("quantized " + name, ["info", d], os.path.join(d, named), *want)

    q_case("truncated", "ok-dbf", None, lambda s: s[:len(s) - 200], "data_offsets invalid")
    q_case("truncated-config", "ok-mdbf", lambda c: c[:len(c) - 40], None, "not valid JSON",
           named="config.json")

    def inf_vec(s):
        h, body = st_split(s)
        b = bytearray(body)
        off = h["model.layers.0.self_attn.q_proj.a"]["data_offsets"][0]
        b[off + 1] |= 0x7c  # F16 exponent all ones: Inf (or NaN)
        return st_join(h, bytes(b))

    q_case("flipped-fp16-vector", "ok-dbf", None, inf_vec, "model.layers.0.self_attn.q_proj.a",
           "is not finite")

    def mid(c, v):
        j = json.loads(c)
        j["quantization_config"]["layers"]["model.layers.0.self_attn.q_proj"]["mid"] = v
        return json.dumps(j)

    q_case("oversized-mid", "ok-dbf", lambda c: mid(c, 1000000), None,
           "model.layers.0.self_attn.q_proj.A", "expected U8 [16, 125000]")
    q_case("wrong-type-mid", "ok-dbf", lambda c: mid(c, "8"), None,
           "model.layers.0.self_attn.q_proj", '"mid" must be an integer', named="config.json")

    def fmt(c, v):
        j = json.loads(c)
        j["quantization_config"]["layers"]["model.layers.0.mlp.up_proj"]["format"] = v
        return json.dumps(j)

    q_case("wrong-type-format", "ok-rtn2", lambda c: fmt(c, 2), None, 'needs an object with a "format" string',
           named="config.json")
    q_case("unknown-format", "ok-rtn2", lambda c: fmt(c, "rtn9"), None, 'unknown format "rtn9"',
           named="config.json")

    def drop(s):
        h, body = st_split(s)
        del h["model.layers.0.mlp.down_proj.B_env" if "model.layers.0.mlp.down_proj.B_env" in h else
              sorted(k for k in h if k.startswith("model.layers.0.mlp.down_proj."))[0]]
        return st_join(h, body)

    q_case("missing-tensor", "ok-mdbf", None, drop, "model.layers.0.mlp.down_proj", "missing tensor")

    # ---------------- .npy arrays (bitllm fit's matrix and importances) ----------------
    good = seed("npy", "ok-f32-3x4")  # 3 x 4 float32, version 1.0, 128-byte header

    def npy_case(name, data, *want, imp=False):
        p = write(T("npy", name + ".npy"), data)
        argv = ["fit", write(T("npy", "W.npy"), good), "--importance", p] if imp else ["fit", p]
        case("npy " + name, argv + ["--method", "rtn"], p, *want)

    npy_case("truncated-header", good[:60], "header longer than the file")
    npy_case("truncated-data", good[:-4], ".npy data is 44 bytes, the shape needs 48")
    npy_case("flipped-magic", flip(good, 1, 0x01), "no \\x93NUMPY magic")
    npy_case("wrong-type-dtype", good.replace(b"'<f4'", b"'<i4'", 1), "'<i4'")
    npy_case("wrong-type-big-endian", good.replace(b"'<f4'", b"'>f4'", 1), "'>f4'")
    npy_case("wrong-type-order", good.replace(b"False", b"Maybe", 1), "'fortran_order' is not True or False")
    npy_case("oversized-shape", good.replace(b"(3, 4)", b"(3037000500, 3037000500)", 1).replace(b" " * 18, b"", 1),
             "shape overflows")
    npy_case("wrong-shape-3d", good.replace(b"(3, 4)", b"(1, 3, 4)", 1).replace(b"   \n", b"\n", 1),
             "expected a 2-D array")
    npy_case("nonfinite", good[:-4] + struct.pack("<f", float("nan")), "element 11 is not finite")
    npy_case("wrong-shape-importance", good, "input importance must be a vector of 4 values", imp=True)
    vec = npy("<f4", (4,), struct.pack("<4f", 1.0, float("inf"), 1.0, 1.0))
    npy_case("nonfinite-importance", vec, "value 1 is inf; importances must be finite", imp=True)

    # ---------------- calibration data (quantize --calib) ----------------
    cmodel = write(T("calib", "model.gguf"), gg)  # a 32-token vocabulary

    def ids_npy(descr, fmt, vals):
        return npy(descr, (len(vals),), struct.pack("<%d%s" % (len(vals), fmt), *vals))

    def calib_case(name, data, *want):
        p = write(T("calib", name), data)
        case("calib " + name, ["quantize", cmodel, "-m", "dbf", "--calib", p, "--calib-seq", "16", "-o",
                               T("calib", "out")], p, *want)

    calib_case("empty.txt", b"", "no tokens")
    calib_case("oversized-id.npy", ids_npy("<i4", "i", [1, 2, 99999, 3]), "token 2 is 99999, outside the model's vocabulary of 32")
    calib_case("negative-id.npy", ids_npy("<i4", "i", [1, -3]), "token 1 is -3, outside")
    calib_case("oversized-u16.npy", ids_npy("<u2", "H", [65535]), "token 0 is 65535, outside")
    calib_case("oversized-u64.npy", ids_npy("<u8", "Q", [2**64 - 1]), "token 0 is 18446744073709551615, outside")
    calib_case("negative-i16.npy", ids_npy("<i2", "h", [5, -32768]), "token 1 is -32768, outside")
    calib_case("float.npy", ids_npy("<f4", "f", [1.0]), "token arrays must be integers", "'<f4'")
    calib_case("int8.npy", ids_npy("|i1", "b", [1]), "token arrays must be integers", "'|i1'")
    calib_case("3d.npy", npy("<i4", (1, 1, 2), struct.pack("<2i", 1, 2)), "1-D or 2-D, not 3-D")
    calib_case("truncated.npy", ids_npy("<i4", "i", [1, 2, 3])[:-2], ".npy data is 10 bytes, the shape needs 12")
    calib_case("bad-header.npy", ids_npy("<i4", "i", [1]).replace(b"'shape'", b"'shope'", 1), "unknown or repeated key")

    # ---------------- eval task files ----------------
    model = write(T("eval", "model.gguf"), gg)
    fnames = {"arc_easy": "llm-foundry-icl/arc_easy.jsonl", "boolq": "llm-foundry-icl/boolq.jsonl",
              "winogrande": "llm-foundry-icl/winogrande.jsonl", "lambada": "llm-foundry-icl/lambada_openai.jsonl",
              "hellaswag": "hellaswag/hellaswag_val_full.txt", "piqa": "piqa/valid.jsonl"}

    def task_case(name, task, text, *want, labels=None):
        d = T("data-" + name)
        p = write(os.path.join(d, fnames[task]), text)
        if labels is not None:
            lp = write(os.path.join(d, "piqa", "valid-labels.lst"), labels)
            p = lp if "valid-labels.lst" in want[0] else p
        case("task %s %s" % (task, name), ["eval", model, "--tasks", task, "--data", d], p, *want)

    arc = seed("tasks", "ok-arc_easy")[1:].decode()
    task_case("truncated", "arc_easy", arc[:len(arc) // 2], "arc_easy.jsonl:1: not valid JSON")
    task_case("flipped-quote", "arc_easy", arc.replace('"query"', "'query\"", 1), "arc_easy.jsonl:1: not valid JSON")
    task_case("two-objects", "arc_easy", arc.rstrip("\n") + " " + arc, "arc_easy.jsonl:1: not valid JSON")
    task_case("nul-escape", "arc_easy", arc.replace("a gas?", "a gas?\\u0000 Or a solid?", 1),
              "arc_easy.jsonl:1: not valid JSON (a NUL character")
    task_case("oversized-gold", "arc_easy", arc.replace('"gold": 1', '"gold": 1e300', 1), '"gold" must be an index')
    task_case("flipped-gold", "arc_easy", arc.replace('"gold": 1', '"gold": 9', 1), '"gold" must be an index in [0, 4)')
    task_case("wrong-type-choices", "arc_easy", arc.replace('"choices": [', '"choices": "x", "c": [', 1),
              "need >= 2 choices")
    task_case("wrong-type-query", "arc_easy", arc.replace('"query": "Question: Which is a gas?"', '"query": 5', 1),
              'missing string field "query"')
    bq = seed("tasks", "ok-boolq")[1:].decode()
    task_case("wrong-type-gold", "boolq", bq.replace('"gold": 1', '"gold": "1"', 1), '"gold" must be an index')
    wg = seed("tasks", "ok-winogrande")[1:].decode()
    task_case("wrong-type-options", "winogrande", wg.replace('"context_options": [', '"context_options": [1, ', 1),
              "must hold 2 strings")
    lb = seed("tasks", "ok-lambada")[1:].decode()
    task_case("one-word", "lambada", '{"context": "", "continuation": "word"}\n', "cannot split off the last word")
    task_case("wrong-type-context", "lambada", lb.replace('"context": "She', '"context": ["She', 1).replace(' old"', ' old"]', 1),
              'missing string field "context"')
    hs = seed("tasks", "ok-hellaswag")[1:].decode()
    task_case("truncated", "hellaswag", hs[:len(hs) - 15], "not a multiple of 6")
    task_case("wrong-type-gold", "hellaswag", hs.replace("\n2\n", "\nx\n", 1), "gold label must be 0-3")
    task_case("nul-byte", "hellaswag", hs.replace("sponge", "spo\0ge", 1), "a NUL byte at offset")
    pq = seed("tasks", "ok-piqa-labels")
    pq_jsonl = pq[2 + pq[1]:].decode()
    task_case("wrong-type-label", "piqa", pq_jsonl, "valid-labels.lst:2: expected 0 or 1", labels="0\n2\n")
    task_case("fewer-labels", "piqa", pq_jsonl, "more items than labels (1)", labels="0\n")

    import shutil
    shutil.rmtree(tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
