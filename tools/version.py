#!/usr/bin/env python3
"""Prints MAJOR.MINOR.PATCH from include/prescore/version.h (for meson.build)."""
import re
import sys

text = open(sys.argv[1]).read()
parts = [re.search(r"#define PS_VERSION_%s (\d+)" % k, text).group(1)
         for k in ("MAJOR", "MINOR", "PATCH")]
print(".".join(parts))
