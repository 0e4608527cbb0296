#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): tiny, valid inputs of
every form each parser reads, made from scratch (no shared model is copied). Seeds named ok-*
must load (tests/test_regress.c checks it). The quantized model directories are made with the
bitllm command itself: pass its path with --bitllm (default build/bitllm).

    python3 fuzz/make_seeds.py [--bitllm build/bitllm]
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
rng = random.Random(1234)


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def floats(n, scale=0.1):
    return [rng.uniform(-scale, scale) for _ in range(n)]


# ---- a tiny LLaMA-style model: dim 16, ffn 32, 1 layer, 2 heads (1 kv), vocab 32 ----
D, F, L, H, KV, V = 16, 32, 1, 2, 1, 32
HD = D // H


def layer_shapes(names):
    """(name, shape) of every tensor, in the naming scheme given."""
    out = [(names["embd"], [V, D]), (names["norm"], [D])]
    for l in range(L):
        p = names["layer"] % l
        out += [(p + names["attn_norm"], [D]), (p + names["ffn_norm"], [D])]
        for proj, shape in zip(names["proj"], [[D, D], [KV * HD, D], [KV * HD, D], [D, D],
                                               [F, D], [F, D], [D, F]]):
            out.append((p + proj + ".weight", shape))
    return out


HF = {"embd": "model.embed_tokens.weight", "norm": "model.norm.weight", "layer": "model.layers.%d.",
      "attn_norm": "input_layernorm.weight", "ffn_norm": "post_attention_layernorm.weight",
      "proj": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
GG = {"embd": "token_embd.weight", "norm": "output_norm.weight", "layer": "blk.%d.",
      "attn_norm": "attn_norm.weight", "ffn_norm": "ffn_norm.weight",
      "proj": ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]}


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def values(name, shape):
    if "norm" in name:
        return [1.0 + x for x in floats(numel(shape), 0.05)]
    return floats(numel(shape))


def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    return struct.pack("<f", x)[2:]


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def model_safetensors(dtype="F32"):
    enc = {"F32": lambda v: struct.pack("<%df" % len(v), *v),
           "F16": lambda v: b"".join(f16(x) for x in v),
           "BF16": lambda v: b"".join(bf16(x) for x in v)}[dtype]
    return safetensors([(n, dtype, s, enc(values(n, s))) for n, s in layer_shapes(HF)])


def hf_config(**over):
    c = {"model_type": "llama", "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L,
         "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V,
         "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
    c.update(over)
    return json.dumps(c, indent=1)


def model_dir_input(config, st):
    cfg = config.encode()
    return struct.pack("<I", len(cfg)) + cfg + st


# ---- safetensors ----
def seeds_safetensors():
    raw = lambda fmt, v: struct.pack("<%d%s" % (len(v), fmt), *v)
    put("safetensors", "ok-dtypes", safetensors([
        ("a.f32", "F32", [2, 3], raw("f", floats(6))),
        ("b.f16", "F16", [4], b"".join(f16(x) for x in floats(4))),
        ("c.bf16", "BF16", [2, 2], b"".join(bf16(x) for x in floats(4))),
        ("d.u8", "U8", [3], bytes([1, 2, 255])),
        ("e.i8", "I8", [2], raw("b", [-1, 5])),
        ("f.i32", "I32", [2], raw("i", [-7, 9])),
        ("g.i64", "I64", [1], raw("q", [1 << 40])),
        ("h.f64", "F64", [1, 1], raw("d", [0.5])),
        ("i.empty", "F32", [0, 4], b""),
    ], meta={"format": "pt", "note": "seed"}))
    put("safetensors", "ok-model", model_safetensors("F16"))
    put("safetensors", "ok-scalar", safetensors([("s", "F32", [], raw("f", [1.5]))]))


# ---- GGUF ----
GGUF_T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8,
          "arr": 9, "u64": 10, "i64": 11, "f64": 12}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == "str":
        return gstr(v)
    if t == "arr":
        et, items = v
        body = b"".join(gval(et, x) for x in items)
        return struct.pack("<IQ", GGUF_T[et], len(items)) + body
    fmt = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f",
           "bool": "?", "u64": "Q", "i64": "q", "f64": "d"}[t]
    return struct.pack("<" + fmt, v)


def gguf(kvs, tensors, align=32):
    """kvs: list of (key, type, value); tensors: list of (name, ggml type, shape rows-first, raw)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", GGUF_T[t]) + gval(t, v)
    off, blobs = 0, []
    for name, gt, shape, raw in tensors:
        ne = list(reversed(shape))
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", gt, off)
        blobs.append((off, raw))
        off += len(raw) + (-len(raw) % align)
    out += b"\0" * (-len(out) % align)
    data = bytearray(off)
    for o, raw in blobs:
        data[o:o + len(raw)] = raw
    return out + bytes(data)


def q8_0(v):
    out = b""
    for b in range(0, len(v), 32):
        blk = v[b:b + 32]
        d = max(abs(x) for x in blk) / 127 or 1.0
        out += f16(d) + bytes((round(x / d) & 0xFF) for x in blk)
    return out


def spm_vocab():
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(8)]
    toks += ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab", "c", "\u2581the", "e", "h", "t",
             "th", "he", "o", "l", "lo", "ll", "\u2581l", "r", "d", "w"]
    return toks[:V]


def seeds_gguf():
    toks = spm_vocab()
    types = [2, 3, 3] + [6] * 8 + [1] * (V - 11)
    meta = [("general.architecture", "str", "llama"), ("general.alignment", "u32", 32),
            ("llama.embedding_length", "u32", D), ("llama.feed_forward_length", "u32", F),
            ("llama.block_count", "u32", L), ("llama.attention.head_count", "u32", H),
            ("llama.attention.head_count_kv", "u32", KV), ("llama.context_length", "u32", 64),
            ("llama.rope.freq_base", "f32", 10000.0),
            ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
            ("tokenizer.ggml.model", "str", "llama"), ("tokenizer.ggml.tokens", "arr", ("str", toks)),
            ("tokenizer.ggml.scores", "arr", ("f32", [-float(i) for i in range(V)])),
            ("tokenizer.ggml.token_type", "arr", ("i32", types)),
            ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2)]
    f32 = lambda v: struct.pack("<%df" % len(v), *v)
    tensors = [(n, 0, s, f32(values(n, s))) for n, s in layer_shapes(GG)]
    put("gguf", "ok-llama-f32", gguf(meta, tensors))
    # F16 / Q8_0 weights and an untied head with a Q8_0 embedding
    mixed = []
    for n, s in layer_shapes(GG):
        v = values(n, s)
        if len(s) == 2 and s[1] % 32 == 0:
            mixed.append((n, 8, s, q8_0(v)))
        elif len(s) == 2:
            mixed.append((n, 1, s, b"".join(f16(x) for x in v)))
        else:
            mixed.append((n, 0, s, f32(v)))
    mixed.append(("output.weight", 1, [V, D], b"".join(f16(x) for x in floats(V * D))))
    put("gguf", "ok-llama-q8-f16", gguf(meta, mixed))
    # a byte-level (gpt2) tokenizer with merges, qwen2 names and biases
    alphabet = b" abcdehilmnorstuwy.,!?'\n0123"  # V - 4 bytes of the byte-level alphabet
    bl = [bytes_to_unicode()[b] for b in alphabet] + ["\u0120a", "ab", "<|endoftext|>", "<|im_end|>"]
    gmeta = [("general.architecture", "str", "qwen2"), ("qwen2.embedding_length", "u32", D),
             ("qwen2.feed_forward_length", "u32", F), ("qwen2.block_count", "u32", L),
             ("qwen2.attention.head_count", "u32", H), ("qwen2.attention.head_count_kv", "u32", KV),
             ("qwen2.rope.freq_base", "f32", 1e6),
             ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", "qwen2"),
             ("tokenizer.ggml.tokens", "arr", ("str", bl)),
             ("tokenizer.ggml.token_type", "arr", ("i32", [1] * (V - 2) + [3, 3])),
             ("tokenizer.ggml.merges", "arr", ("str", ["\u0120 a", "a b"])),
             ("tokenizer.ggml.eos_token_id", "u32", V - 2)]
    qt = [(n, 0, s, f32(values(n, s))) for n, s in layer_shapes(GG)]
    for i, (p, rows) in enumerate([("attn_q", D), ("attn_k", KV * HD), ("attn_v", KV * HD)]):
        qt.append(("blk.0.%s.bias" % p, 0, [rows], f32(floats(rows))))
    put("gguf", "ok-qwen2-gpt2tok", gguf(gmeta, qt))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# ---- llama2.c ----
def llama2c(version, shared=True, group=8):
    f32 = lambda v: struct.pack("<%df" % len(v), *v)
    kvd = KV * HD
    shapes = {"tok": [V, D], "attn_norm": [L, D], "wq": [L, D, D], "wk": [L, kvd, D],
              "wv": [L, kvd, D], "wo": [L, D, D], "ffn_norm": [L, D], "w1": [L, F, D],
              "w2": [L, D, F], "w3": [L, F, D], "final_norm": [D], "out": [V, D]}
    data = {k: values(k, s) for k, s in shapes.items()}
    seq = 8
    if version == 0:
        hdr = struct.pack("<7i", D, F, L, H, KV, V if shared else -V, seq)
        body = b"".join(f32(data[k]) for k in ["tok", "attn_norm", "wq", "wk", "wv", "wo",
                                                   "ffn_norm", "w1", "w2", "w3", "final_norm"])
        body += f32(floats(seq * HD // 2)) * 2  # freq_cis real and imag (skipped by readers)
        if not shared:
            body += f32(data["out"])
        return hdr + body
    hdr = struct.pack("<Ii7iB", 0x616B3432, version, D, F, L, H, KV, V, seq, 1 if shared else 0)
    if version == 2:
        hdr += struct.pack("<i", group)
    hdr += b"\0" * (256 - len(hdr))
    body = b"".join(f32(data[k]) for k in ["attn_norm", "ffn_norm", "final_norm"])
    mats = ["tok", "wq", "wk", "wv", "wo", "w1", "w2", "w3"] + ([] if shared else ["out"])
    for k in mats:
        v = data[k]
        if version == 1:
            body += f32(v)
            continue
        q, sc = b"", []
        for g in range(0, len(v), group):
            blk = v[g:g + group]
            s = max(abs(x) for x in blk) / 127 or 1.0
            q += bytes((round(x / s) & 0xFF) for x in blk)
            sc.append(s)
        body += q + f32(sc)
    return hdr + body


def seeds_llama2c():
    put("llama2c", "ok-v0-shared", llama2c(0, True))
    put("llama2c", "ok-v0-unshared", llama2c(0, False))
    put("llama2c", "ok-v1", llama2c(1, True))
    put("llama2c", "ok-v2-unshared", llama2c(2, False))


# ---- config.json ----
def seeds_config():
    put("config", "ok-llama", hf_config())
    put("config", "ok-qwen3", hf_config(model_type="qwen3", head_dim=8, num_key_value_heads=1,
                                        tie_word_embeddings=False, eos_token_id=[2, 3]))
    put("config", "ok-qwen2", hf_config(model_type="qwen2", rope_theta=1e6, bos_token_id=None))
    put("config", "ok-llama3-rope", hf_config(rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}))
    put("config", "ok-quantized", hf_config(quantization_config={
        "method": "mixed", "layers": {
            "model.layers.0.self_attn.q_proj": {"format": "dbf", "mid": 8},
            "model.layers.0.self_attn.k_proj": {"format": "onebit", "post_ln": False},
            "model.layers.0.mlp.up_proj": {"format": "mdbf", "mid": 4, "rank_l": 1, "paths": 2},
            "model.layers.0.mlp.down_proj": {"format": "rtn", "bits": 2, "group": 64}}}))
    put("config", "ok-bitllama", hf_config(model_type="bitllama"))


# ---- tokenizer.json ----
def seeds_tokenizer_json():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    vocab.update({"\u0120t": 256, "he": 257, "\u0120the": 258, "ll": 259, "hell": 260})
    bytelevel = {
        "version": "1.0",
        "added_tokens": [{"id": 261, "content": "<|endoftext|>", "special": True, "lstrip": False,
                          "rstrip": False, "single_word": False, "normalized": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel"},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "ignore_merges": False, "vocab": vocab,
                  "merges": ["\u0120 t", "h e", "\u0120t he", "l l", "he ll"]}}
    put("tokenizer_json", "ok-bytelevel", json.dumps(bytelevel, ensure_ascii=False))
    spm_vocab_d = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        spm_vocab_d["<0x%02X>" % b] = 3 + b
    spm_vocab_d.update({"\u2581": 259, "a": 260, "b": 261, "\u2581a": 262, "ab": 263, "\u2581ab": 264})
    spm = {
        "added_tokens": [{"id": i, "content": c, "special": True} for i, c in
                         enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
                  "vocab": spm_vocab_d, "merges": [["a", "b"], ["\u2581", "a"], ["\u2581", "ab"]]}}
    put("tokenizer_json", "ok-sentencepiece", json.dumps(spm, ensure_ascii=False))
    meta = {"added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                              "split": False},
            "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"},
            "model": {"type": "BPE", "byte_fallback": False,
                      "vocab": {"\u2581": 0, "a": 1, "b": 2, "\u2581a": 3}, "merges": ["\u2581 a"]}}
    put("tokenizer_json", "ok-metaspace", json.dumps(meta, ensure_ascii=False))


# ---- tokenizer.bin ----
def seeds_tokenizer_bin():
    toks = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(16)]
    toks += [b" ", b"a", b"b", b" a", b"ab", b" ab", b"the", b" the", b"e", b"h", b"he", b"\xc3\xa9", b" t"]
    body = struct.pack("<i", max(len(t) for t in toks))
    for i, t in enumerate(toks):
        body += struct.pack("<fi", -float(i) / 2, len(t)) + t
    put("tokenizer_bin", "ok-%d" % len(toks), struct.pack("<H", len(toks)) + body)


# ---- model directories ----
def seeds_model_dir(bitllm):
    st = model_safetensors("F32")
    put("model_dir", "ok-llama-f32", model_dir_input(hf_config(), st))
    put("model_dir", "ok-llama-bf16-untied", model_dir_input(
        hf_config(tie_word_embeddings=False),
        safetensors([(n, "BF16", s, b"".join(bf16(x) for x in values(n, s)))
                     for n, s in layer_shapes(HF) + [("lm_head.weight", [V, D])]])))
    if not bitllm or not os.path.exists(bitllm):
        print("no bitllm binary: quantized model_dir seeds skipped")
        return
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "fp")
        os.makedirs(src)
        with open(os.path.join(src, "config.json"), "w") as f:
            f.write(hf_config())
        with open(os.path.join(src, "model.safetensors"), "wb") as f:
            f.write(model_safetensors("F16"))
        for method, extra in [("onebit", []), ("dbf", ["--iters", "2"]),
                              ("mdbf", ["--iters", "2", "--paths", "2", "--bpw", "8"]), ("rtn1", []),
                              ("rtn2", ["--group", "64"]), ("rtn4", ["--group", "64"])]:
            out = os.path.join(tmp, method)
            subprocess.run([bitllm, "quantize", src, "-o", out, "-m", method] + extra, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(out, "config.json")) as f:
                cfg = f.read()
            with open(os.path.join(out, "model.safetensors"), "rb") as f:
                put("model_dir", "ok-" + method, model_dir_input(cfg, f.read()))
    finally:
        shutil.rmtree(tmp)


# ---- eval task files (byte 0 chooses the task; see fuzz/targets.h) ----
TASK = {"piqa": 0, "arc_easy": 1, "arc_challenge": 2, "hellaswag": 3, "winogrande": 4,
        "boolq": 5, "lambada": 6, "openbookqa": 7, "piqa_labels": 8}


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def seeds_tasks():
    t = lambda name, text: bytes([TASK[name]]) + text.encode()
    put("tasks", "ok-piqa-foundry", t("piqa", jsonl([
        {"query": "Question: How do you open a jar?\n", "choices": ["Twist the lid.", "Eat it."], "gold": 0},
        {"query": "Question: Dry wet shoes?\n", "choices": ["Oven at 500.", "Stuff with paper."], "gold": 1}])))
    labels = b"0\n1\n"
    put("tasks", "ok-piqa-labels", bytes([TASK["piqa_labels"], len(labels)]) + labels + jsonl([
        {"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat it."},
        {"goal": "Dry wet shoes", "sol1": "Oven at 500.", "sol2": "Stuff with newspaper."}]).encode())
    for name in ["arc_easy", "arc_challenge"]:
        put("tasks", "ok-" + name, t(name, jsonl([
            {"query": "Question: Which is a gas?", "choices": ["ice", "steam", "rock", "wood"], "gold": 1}])))
    put("tasks", "ok-openbookqa", t("openbookqa", jsonl([
        {"query": "The sun is a", "choices": ["star", "planet", "moon", "comet"], "gold": 0}])))
    put("tasks", "ok-boolq", t("boolq", jsonl([
        {"query": "Passage: Water boils at 100 C.\nQuestion: does water boil at 100 c?",
         "choices": ["no", "yes"], "gold": 1}])))
    put("tasks", "ok-winogrande", t("winogrande", jsonl([
        {"context_options": ["The trophy did not fit because the trophy",
                             "The trophy did not fit because the case"],
         "continuation": "was too big.", "gold": 0}])))
    put("tasks", "ok-lambada", t("lambada", jsonl([
        {"context": "She opened the door and saw her old", "continuation": "friend"}])))
    put("tasks", "ok-hellaswag", t("hellaswag",
        "Washing dishes: A man fills a sink with water. he\n2\n"
        "[title] eats a sandwich.\nthrows the plate.\nscrubs a plate with a sponge.\nsings loudly.\n"))


# ---- .npy arrays ----
def npy(descr, shape, raw, version=1, fortran=False):
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, "True" if fortran else "False",
        ", ".join(str(x) for x in shape) + ("," if len(shape) == 1 else ""))
    pre = 10 if version == 1 else 12
    d += " " * ((-(pre + len(d) + 1)) % 64) + "\n"
    head = b"\x93NUMPY" + bytes([version, 0])
    head += struct.pack("<H", len(d)) if version == 1 else struct.pack("<I", len(d))
    return head + d.encode("latin-1") + raw


def seeds_npy():
    r = random.Random(7)
    v = [r.uniform(-1, 1) for _ in range(12)]
    put("npy", "ok-f32-3x4", npy("<f4", (3, 4), struct.pack("<12f", *v)))
    put("npy", "ok-f64-fortran", npy("<f8", (4, 3), struct.pack("<12d", *v), fortran=True))
    put("npy", "ok-f16-v2", npy("<f2", (2, 6), b"".join(f16(x) for x in v), version=2))
    put("npy", "ok-f32-1d-v3", npy("<f4", (12,), struct.pack("<12f", *v), version=3))
    put("npy", "ok-empty", npy("<f4", (0, 5), b""))


# ---- OpenAI request bodies (selector byte: bit 0 chat, then the chat template's index) ----
def seeds_request():
    def req(chat, tmpl, body):
        return bytes([(tmpl << 1) | (1 if chat else 0)]) + json.dumps(body).encode()
    put("request", "ok-completion", req(False, 0, {
        "prompt": "the world", "max_tokens": 8, "temperature": 0, "seed": 3,
        "stop": ["\n", "ab"], "stream": True}))
    put("request", "ok-completion-ids", req(False, 0, {
        "prompt": [1, 260, 261], "max_tokens": 4, "top_p": 0.9, "logit_bias": {"5": -100}}))
    put("request", "ok-completion-scored", req(False, 0, {
        "prompt": [[1, 260, 261, 262]], "max_tokens": 0, "echo": True, "logprobs": 5}))
    put("request", "ok-chat-logprobs", req(True, 0, {
        "messages": [{"role": "user", "content": "hello"}], "logprobs": True,
        "top_logprobs": 3}))
    put("request", "ok-stream-choices", req(False, 0, {
        "prompt": ["the world", [1, 260]], "n": 2, "stream": True, "echo": True, "logprobs": 1}))
    # (not completion requests: their names do not start with ok-, which the replay test loads)
    put("request", "tokenize-body", req(False, 0, {
        "content": "he llo the world", "add_special": True, "with_pieces": True}))
    put("request", "detokenize-body", req(False, 0, {"tokens": [1, 260, 261, 3, 258]}))
    for i in range(7):  # the chat families, in bl_chat_template_names order
        put("request", "ok-chat-%d" % i, req(True, i, {
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hello"},
                         {"role": "assistant", "content": "the world"},
                         {"role": "user", "content": [{"type": "text", "text": "he llo"}]}],
            "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bitllm", default=os.path.join(HERE, "..", "build", "bitllm"))
    ap.add_argument("--only", nargs="+", help="write these targets' seeds only")
    a = ap.parse_args()
    if a.only:
        for t in a.only:
            shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)
            globals()["seeds_" + t]()
        return
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    seeds_safetensors()
    seeds_gguf()
    seeds_llama2c()
    seeds_config()
    seeds_tokenizer_json()
    seeds_tokenizer_bin()
    seeds_model_dir(a.bitllm)
    seeds_tasks()
    seeds_npy()
    seeds_request()
    total = 0
    for root, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
