#include <stdio.h>
#include "bitllm/core.h"
int main(void) { printf("bitllm %s\n", BITLLM_VERSION); return 0; }
