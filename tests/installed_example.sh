#!/bin/sh
# Installs the built library into a scratch DESTDIR and builds the API guide's
# example against it the way docs/API.md tells users to: pkg-config only, no
# paths into the source or build tree. Then runs it (exit 77 = no device).
#   installed_example.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(find "$dest" -name prescore-cl.pc | head -n 1)
[ -n "$pc" ] || { echo "prescore-cl.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
# The .pc names the real prefix; the sysroot maps it into the DESTDIR copy.
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs prescore-cl)
echo "cc attention_example.c $flags -lm"
${CC:-cc} -std=c99 -o "$dest/attention_example" "$src/docs/examples/attention_example.c" $flags -lm
libdir=$dest$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=libdir prescore-cl)
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$dest/attention_example"
