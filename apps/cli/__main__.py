"""``python -m apps.cli``: the same as ``pwb``."""

from apps.cli import main

main()
