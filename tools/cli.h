/* Subcommands of the bitllm tool. Each lives in tools/cmd_<name>.c, parses its own flags, prints
 * its own --help, and returns the process exit code. */
#ifndef BITLLM_CLI_H
#define BITLLM_CLI_H

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_speed(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_formats(int argc, char **argv);

#endif
