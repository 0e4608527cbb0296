/* Fuzz targets: one per untrusted-input parser. Each takes a whole input image from memory, runs
 * the library's real entry point on it (plus a little use of the result, so that a value the
 * parser let through but cannot serve shows up), and returns the parser's status with its message
 * in err. They serve the libFuzzer harnesses (fuzz/fuzz_main.c, `make fuzz`) and the regression
 * test that replays tests/regress/<target>/ and fuzz/corpus/<target>/ in every build
 * (tests/test_regress.c). docs/fuzzing.md says how to run them. */
#ifndef BITLLM_FUZZ_TARGETS_H
#define BITLLM_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "bitllm/core.h"

typedef bl_status (*bl_fuzz_fn)(const uint8_t *data, size_t size, bl_err *err);

typedef struct {
    const char *name; /* directory name under fuzz/corpus and tests/regress */
    bl_fuzz_fn fn;
    const char *what; /* the input, for docs and --help */
} bl_fuzz_target;

/* safetensors file image */
bl_status bl_fuzz_safetensors(const uint8_t *data, size_t size, bl_err *err);
/* GGUF file image: parser, embedded tokenizer, model */
bl_status bl_fuzz_gguf(const uint8_t *data, size_t size, bl_err *err);
/* llama2.c checkpoint image, loaded as a model */
bl_status bl_fuzz_llama2c(const uint8_t *data, size_t size, bl_err *err);
/* config.json text (with its quantization_config entries) */
bl_status bl_fuzz_config(const uint8_t *data, size_t size, bl_err *err);
/* tokenizer.json text, then encode/decode of a fixed text */
bl_status bl_fuzz_tokenizer_json(const uint8_t *data, size_t size, bl_err *err);
/* u16 little-endian vocabulary size, then a llama2.c tokenizer.bin image */
bl_status bl_fuzz_tokenizer_bin(const uint8_t *data, size_t size, bl_err *err);
/* u32 little-endian length L, L bytes of config.json, then a model.safetensors image: a model
 * directory (plain or with quantization_config), loaded and run for two tokens */
bl_status bl_fuzz_model_dir(const uint8_t *data, size_t size, bl_err *err);
/* one byte choosing the task (id % 9; 8 = PIQA's valid.jsonl with labels), for 8: one byte L
 * and L bytes of valid-labels.lst; then the task file's text */
bl_status bl_fuzz_tasks(const uint8_t *data, size_t size, bl_err *err);
/* a .npy image, converted to f32 */
bl_status bl_fuzz_npy(const uint8_t *data, size_t size, bl_err *err);
/* one byte (bit 0: chat, else completion; the rest: the chat template by index, or none), then
 * an HTTP request body for /v1/completions or /v1/chat/completions, parsed and tokenized against
 * a small built-in vocabulary with a 512-token context */
bl_status bl_fuzz_request(const uint8_t *data, size_t size, bl_err *err);

extern const bl_fuzz_target bl_fuzz_targets[];
extern const int bl_fuzz_n_targets;

#endif
