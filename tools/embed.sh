#!/bin/sh
# Turns a text file into a C source defining `const char NAME[]` and `const size_t NAME_len`.
# Used to embed the Lua half of the DSL into the weir binary. Usage: embed.sh FILE NAME
set -eu
printf '/* generated from %s by tools/embed.sh; do not edit */\n#include <stddef.h>\n' "$1"
printf 'const char %s[] = {\n' "$2"
od -An -v -tx1 "$1" | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g' -e 's/^/  /'
printf '  0x00 };\nconst size_t %s_len = sizeof(%s) - 1;\n' "$2" "$2"
