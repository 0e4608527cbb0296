/* Private to src/tokenizer: the tokenizer object, hash maps, the BPE merge engine and the helpers
 * the loaders share.
 *
 * One representation serves every source format. Each id has a type (GGUF numbering), a "key"
 * (the bytes the encoder matches: raw bytes for byte-level vocabularies, text with plain spaces
 * for SentencePiece ones) and its decoded bytes. Loaders convert their spelling ("▁", GPT-2's
 * byte-to-unicode alphabet) into this form once, so the encoders and the decoder never see it. */
#ifndef BITLLM_TOK_INTERNAL_H
#define BITLLM_TOK_INTERNAL_H

#include "bitllm/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
enum { TK_NORMAL = 1, TK_UNKNOWN = 2, TK_CONTROL = 3, TK_USER = 4, TK_UNUSED = 5, TK_BYTE = 6 };

/* Ids beyond this are rejected as malformed (the largest real vocabularies are ~260k). */
#define TK_MAX_VOCAB (1 << 24)

/* ---- growable byte buffer ---- */
typedef struct {
    char *p;
    size_t n, cap;
} tk_buf;
bool tk_buf_reserve(tk_buf *b, size_t extra);
/* Grows array p of *cap elements of size elem to hold at least need (doubling); returns the
 * (maybe moved) array, or NULL with p untouched when out of memory. */
void *tk_grow(void *p, size_t *cap, size_t need, size_t elem);
bool tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

/* ---- string -> int32 map (keys copied into the map's own arena) ---- */
typedef struct {
    uint32_t hash, off, len;
    int32_t val; /* -1: empty slot */
} tk_strslot;
typedef struct {
    tk_strslot *slot;
    uint32_t cap, n; /* cap is a power of two, load kept under 1/2 */
    tk_buf keys;
} tk_strmap;
bool tk_strmap_init(tk_strmap *m, size_t expected);
/* Inserts key -> val unless key is present; *old receives the existing value or -1. */
bool tk_strmap_put(tk_strmap *m, const void *key, size_t len, int32_t val, int32_t *old);
int32_t tk_strmap_get(const tk_strmap *m, const void *key, size_t len); /* -1 if absent */
void tk_strmap_free(tk_strmap *m);

/* ---- (left id, right id) -> (rank, merged id) map for merge lists ---- */
typedef struct {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, id;
} tk_pairslot;
typedef struct {
    tk_pairslot *slot;
    uint32_t cap, n;
} tk_pairmap;
bool tk_pairmap_init(tk_pairmap *m, size_t expected);
/* Keeps the first (lowest-rank) entry for a pair that is listed twice. */
bool tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
bool tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);
void tk_pairmap_free(tk_pairmap *m);

/* ---- added tokens (HF added_tokens, GGUF control/user-defined tokens of byte-level vocabs) ---- */
typedef struct {
    int32_t id;
    char *text;
    uint32_t len;
    bool special, lstrip, rstrip, single_word;
} tk_added;

/* ---- pre-tokenizer steps (byte-level) ---- */
typedef enum {
    TK_SPLIT_ISOLATED, TK_SPLIT_REMOVED, TK_SPLIT_MERGED_PREV, TK_SPLIT_MERGED_NEXT,
    TK_SPLIT_CONTIGUOUS
} tk_split_behavior;
typedef struct {
    pcre2_code *re;          /* NULL: a ByteLevel step without its own regex */
    tk_split_behavior behavior;
    bool invert;
    bool prefix_space;       /* ByteLevel add_prefix_space */
} tk_pre_step;
#define TK_MAX_PRE 8

/* How a SentencePiece vocabulary gets its leading "▁" (SentencePiece's add_dummy_prefix). */
typedef enum {
    TK_PREFIX_NONE,
    TK_PREFIX_EVERY,        /* every text segment (llama2.c, GGUF, HF Prepend normalizer) */
    TK_PREFIX_EVERY_IF_MISSING, /* HF Metaspace "always": unless it already starts with one */
    TK_PREFIX_FIRST_IF_MISSING, /* HF Metaspace "first": only the segment at offset 0 */
} tk_prefix_mode;

struct bl_tokenizer {
    bl_tok_kind kind;
    int32_t n_vocab;
    char *path;              /* source file, for messages */
    uint8_t *type;           /* [n_vocab] */
    float *score;            /* [n_vocab], SentencePiece score mode only */
    uint32_t *key_off, *key_len; /* [n_vocab] into keys: the bytes the encoder matches */
    tk_buf keys;
    uint32_t *dec_off, *dec_len; /* [n_vocab] into dec: what decode emits */
    tk_buf dec;
    tk_strmap pieces;        /* mergeable keys -> id */
    tk_pairmap merges;       /* rank mode: (left, right) -> (rank, merged) */
    bool use_ranks;          /* merge by rank (merge lists) rather than by piece score */
    /* Score mode: the pairs of adjacent characters found inside some mergeable piece. Between two
     * characters that are no such pair no merge can ever happen, so the text is merged in
     * independent stretches (exactly the same result, with small heaps). */
    tk_pairmap adj;
    int32_t byte_id[256];    /* id of each raw byte (byte fallback / byte-level alphabet), -1 none */
    int32_t bos, eos, unk;
    bool add_bos;            /* the file's default, see bl_tokenizer_add_bos */
    /* SentencePiece */
    tk_prefix_mode prefix;
    bool split_on_space;     /* HF Metaspace split=true: merges never cross a space */
    /* byte-level */
    bool ignore_merges, nfc;
    int n_pre;
    tk_pre_step pre[TK_MAX_PRE];
    /* added tokens, sorted by first byte then longest first: those starting with byte c are
     * added[added_at[c] .. added_at[c + 1]) */
    int n_added;
    tk_added *added;
    uint32_t added_at[257];
    pcre2_code *word_re;     /* "\\w" for single_word added tokens */
    /* SentencePiece vocabularies: their control and user-defined tokens, indexed like added
     * tokens, recognised in text only when the caller asks (bl_tokenizer_encode_pieces) */
    int n_ctl;
    tk_added *ctl;
    uint32_t ctl_at[257];
    char *chat_template;     /* the source's chat template text, or NULL */
};

/* ---- construction (tokenizer.c) ---- */
bl_tokenizer *tk_new(bl_tok_kind kind, int32_t n_vocab, const char *path, bl_err *err);
/* Records the key bytes and type of id (ids may be set in any order; unset ids stay empty,
 * TK_UNUSED). Returns false on allocation failure. */
bool tk_set_token(bl_tokenizer *t, int32_t id, const void *key, size_t len, int type);
/* Adds an added token (its id must be < n_vocab). */
bool tk_add_added(bl_tokenizer *t, int32_t id, const char *text, size_t len, bool special,
                  bool lstrip, bool rstrip, bool single_word);
/* Builds the piece map, byte tables, decode strings and added-token index once every token is
 * set. */
bl_status tk_finish(bl_tokenizer *t, bl_err *err);
/* Records the chat template text (copied); false when out of memory. */
bool tk_set_chat_template(bl_tokenizer *t, const char *text, size_t len);
/* Id of a token spelled exactly as text (added tokens first, then keys), or -1. */
int32_t tk_find_token(const bl_tokenizer *t, const char *text, size_t len);
/* Parses "<0xXX>"; returns the byte or -1. */
int tk_parse_byte_piece(const char *s, size_t len);
/* Replaces every "▁" (U+2581) by a space into out (cleared first). */
bool tk_unmeta(const char *s, size_t len, tk_buf *out);
/* Compiles a split regex (PCRE2, UTF + UCP, JIT when available). */
bl_status tk_compile_regex(bl_tokenizer *t, const char *pattern, size_t len, bool literal,
                           pcre2_code **out, bl_err *err);
/* The regexes behind GGUF's tokenizer.ggml.pre names and the ByteLevel default. */
extern const char *const tk_re_gpt2, *const tk_re_llama3, *const tk_re_qwen2;

/* ---- HF tokenizer.json pieces around the model (hf_pipeline.c) ---- */
struct cJSON;
bool tk_hf_is_bytelevel(const struct cJSON *root);
bool tk_hf_is_spm(const struct cJSON *root);
/* Normalizer and pre-tokenizer -> settings of t (its kind already chosen). */
bl_status tk_hf_pipeline(bl_tokenizer *t, const struct cJSON *root, bl_err *err);
int32_t tk_hf_template_bos(const struct cJSON *root, int32_t n_vocab);

/* ---- GPT-2 byte <-> unicode alphabet (bytebpe.c) ---- */
uint32_t tk_byte_to_cp(uint8_t b);
int tk_cp_to_byte(uint32_t cp); /* -1 if cp is not in the alphabet */
/* Converts a piece spelled in the alphabet to raw bytes; false if it holds another character. */
bool tk_bytelevel_decode(const char *s, size_t len, tk_buf *out);

/* ---- UTF-8 and NFC (unicode.c) ---- */
/* Length of the UTF-8 sequence starting at s (1 for an invalid byte), never more than n. */
size_t tk_utf8_len(const uint8_t *s, size_t n);
/* Decodes one well-formed sequence; returns its length, or 0 (and *cp = the byte) if invalid. */
size_t tk_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
size_t tk_utf8_encode(uint32_t cp, char out[4]);
/* One character: its length (>= 1) and code point, invalid bytes as TK_RAW_BYTE + byte. */
#define TK_RAW_BYTE 0x200000u
size_t tk_utf8_char(const uint8_t *s, size_t n, uint32_t *cp);
/* Unicode White_Space. */
bool tk_is_space(uint32_t cp);
/* Appends the NFC form of s to out. Invalid UTF-8 bytes pass through unchanged. */
bool tk_nfc(const char *s, size_t n, tk_buf *out);

/* ---- merge engine (merge.c) ---- */
typedef struct {
    int32_t id;
    uint32_t start, len;  /* span of the symbol in the encoded text (score mode lookups) */
    int32_t prev, next;   /* neighbours, -1 at the ends */
    bool fixed;           /* byte-fallback symbol: never merges in score mode */
} tk_sym;
typedef struct {
    double prio;
    int32_t left, right, lid, rid, id;
} tk_cand;
typedef struct {
    tk_sym *sym;
    size_t n, cap;
    tk_cand *heap;
    size_t hn, hcap;
} tk_merge_ws;
bool tk_ws_push(tk_merge_ws *ws, int32_t id, uint32_t start, uint32_t len, bool fixed);
/* Merges ws->sym[0 .. n) in place: repeatedly the adjacent pair with the best priority (highest
 * piece score, or lowest merge rank), leftmost on ties, until none is left. The survivors are
 * linked from index 0 by next. text is the buffer the spans refer to. */
bool tk_merge(const bl_tokenizer *t, const char *text, tk_merge_ws *ws);
void tk_ws_free(tk_merge_ws *ws);

/* ---- growable id list ---- */
typedef struct {
    int32_t *p;
    size_t n, cap;
} tk_ids;
bool tk_ids_push(tk_ids *v, int32_t id);

/* ---- encoders ---- */
bl_status tk_spm_encode(const bl_tokenizer *t, const char *s, size_t n, bool first,
                        tk_merge_ws *ws, tk_buf *scratch, tk_ids *out, bl_err *err);
typedef struct tk_bpe_ctx tk_bpe_ctx; /* per-call state: cache, regex match data */
tk_bpe_ctx *tk_bpe_ctx_new(const bl_tokenizer *t);
void tk_bpe_ctx_free(tk_bpe_ctx *c);
bl_status tk_bytebpe_encode(const bl_tokenizer *t, tk_bpe_ctx *c, const char *s, size_t n,
                            tk_ids *out, bl_err *err);

#endif
