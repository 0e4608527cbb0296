/* Tokenizers: SentencePiece-style BPE with byte fallback (llama2.c tokenizer.bin, GGUF "llama"
 * vocabulary, HF tokenizer.json with a BPE model over "▁" pieces) and byte-level BPE (HF
 * tokenizer.json of GPT-2 / Llama-3 / Qwen type with its pre-tokenizer regex and merges, GGUF
 * "gpt2" vocabulary). */
#ifndef BITLLM_TOKENIZER_H
#define BITLLM_TOKENIZER_H

#include "bitllm/io.h"

BL_API_BEGIN

typedef struct bl_tokenizer bl_tokenizer;

typedef enum { BL_TOK_SPM = 0, BL_TOK_BYTE_BPE = 1 } bl_tok_kind;

/* path is a tokenizer.json file, or a directory holding one (tokenizer_config.json beside it, if
 * present, supplies bos/eos and add_bos defaults). */
bl_status bl_tokenizer_load_hf(const char *path, bl_tokenizer **out, bl_err *err);
/* The same from the texts in memory: json (len bytes) is tokenizer.json, cfg the optional
 * tokenizer_config.json (NULL if none); path names the source in messages. */
bl_status bl_tokenizer_from_hf_json(const char *path, const char *json, size_t len,
                                    const char *cfg, size_t cfg_len, bl_tokenizer **out,
                                    bl_err *err);
/* llama2.c tokenizer.bin; vocab_size is the model's (the file does not store it). The file must
 * hold exactly vocab_size tokens: fewer or more means a tokenizer for another model (an error
 * that says how many it holds). */
bl_status bl_tokenizer_load_llama2c(const char *path, int vocab_size, bl_tokenizer **out,
                                    bl_err *err);
/* The same from a file image in memory (path names it in messages). */
bl_status bl_tokenizer_from_llama2c(const char *path, const uint8_t *data, size_t size,
                                    int vocab_size, bl_tokenizer **out, bl_err *err);
/* From GGUF metadata (tokenizer.ggml.*). */
bl_status bl_tokenizer_load_gguf(const bl_gguf *g, bl_tokenizer **out, bl_err *err);
void bl_tokenizer_free(bl_tokenizer *t);

bl_tok_kind bl_tokenizer_kind(const bl_tokenizer *t);
int bl_tokenizer_vocab_size(const bl_tokenizer *t);
int bl_tokenizer_bos(const bl_tokenizer *t); /* -1 if none */
int bl_tokenizer_eos(const bl_tokenizer *t); /* -1 if none */
/* Whether the source asks for BOS at the start of a text (llama2.c/GGUF "llama": yes; GGUF
 * tokenizer.ggml.add_bos_token; HF add_bos_token in tokenizer_config.json, else a post-processor
 * template that starts with a special token). False when there is no BOS. */
bool bl_tokenizer_add_bos(const bl_tokenizer *t);
/* The chat template that came with the tokenizer (HF tokenizer_config.json "chat_template" or a
 * chat_template.jinja beside it; GGUF tokenizer.chat_template), or NULL. */
const char *bl_tokenizer_chat_template(const bl_tokenizer *t);
/* Overrides BOS/EOS (e.g. from the model's config.json); pass -1 to leave one unchanged. */
void bl_tokenizer_set_bos_eos(bl_tokenizer *t, int bos, int eos);

/* Encodes UTF-8 text. Special/added tokens spelled in the text are recognised the way the source
 * tokenizer does (HF: added tokens are split out first; SentencePiece files: never). BOS is
 * prepended only when add_bos is true. *ids is malloc'ed. */
bl_status bl_tokenizer_encode(const bl_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids, bl_err *err);
/* Part of a text to encode: bytes, or exactly one token given by id (id >= 0; its text is only
 * what it stands for in the concatenation, e.g. "<s>" for BOS). */
typedef struct {
    const char *text;
    size_t len;
    int32_t id; /* -1: text to encode */
} bl_tok_piece;
/* Encodes the concatenation of the pieces as bl_tokenizer_encode encodes that text (no BOS is
 * prepended; a piece at offset 0 is what "the start of the text" means), except that a piece with
 * an id becomes exactly that token. With parse_special, the control and user-defined tokens of a
 * SentencePiece vocabulary spelled in the text are recognised as well (HF and byte-level
 * vocabularies always recognise their added tokens), as llama.cpp does for chat prompts. */
bl_status bl_tokenizer_encode_pieces(const bl_tokenizer *t, const bl_tok_piece *pieces, size_t n,
                                     bool parse_special, int32_t **ids, size_t *n_ids,
                                     bl_err *err);
/* Decodes ids to UTF-8 text (byte-fallback and byte-level pieces reassembled; SentencePiece "▁"
 * becomes a space; BOS/EOS and other control tokens produce nothing). Always valid UTF-8: bytes
 * that do not form a character become U+FFFD, as bl_utf8_stream does. *text is malloc'ed and
 * NUL-terminated. */
bl_status bl_tokenizer_decode(const bl_tokenizer *t, const int32_t *ids, size_t n, char **text,
                              size_t *len, bl_err *err);
/* The raw bytes of one token: writes them into buf (at most cap) and returns the byte count.
 * Byte-level and byte-fallback pieces may be partial UTF-8 sequences; output streams use
 * bl_detok. */
size_t bl_tokenizer_piece(const bl_tokenizer *t, int32_t id, char *buf, size_t cap);

/* ---- valid UTF-8 from byte streams (src/tokenizer/detok.c) ----
 * A sequence still incomplete is held back until its next bytes arrive; bytes that cannot
 * complete one become U+FFFD, one per maximal invalid subpart (Unicode §3.9; HF tokenizers'
 * ByteLevel decoder and Python's bytes.decode(errors="replace") do the same). */
typedef struct {
    uint8_t pend[4];
    int n;
} bl_utf8_stream; /* zero-initialise to start */
/* Writes the valid UTF-8 for n more bytes to out, which must hold 3·(n + 3) bytes; returns the
 * count written (held bytes are not written yet). */
size_t bl_utf8_stream_feed(bl_utf8_stream *u, const char *in, size_t n, char *out);
/* End of the stream: a held incomplete sequence becomes U+FFFD (out holds 3 bytes). */
size_t bl_utf8_stream_finish(bl_utf8_stream *u, char *out);
/* s[0..n) as valid UTF-8 in a malloc'ed NUL-terminated copy (NULL when out of memory). */
char *bl_utf8_valid(const char *s, size_t n, size_t *out_len);

/* Streaming detokenizer for generated text (generate, and any chat or server front end): each
 * token's text is returned as soon as it is complete, always valid UTF-8, and the concatenation
 * of everything returned equals bl_tokenizer_decode of the same ids. */
typedef struct {
    const bl_tokenizer *tok;
    bl_utf8_stream utf8;
    char *buf;
    size_t cap;
} bl_detok;
bl_status bl_detok_init(bl_detok *d, const bl_tokenizer *t, bl_err *err);
void bl_detok_free(bl_detok *d);
/* The text that token id completes (may be empty while a character is incomplete); NUL-terminated
 * in d's buffer, valid until the next call. Ids outside the vocabulary produce nothing. */
const char *bl_detok_push(bl_detok *d, int32_t id, size_t *len);
/* End of the stream: U+FFFD for a character that never completed, else empty. */
const char *bl_detok_finish(bl_detok *d, size_t *len);

BL_API_END
#endif
