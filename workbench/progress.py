"""Progress bars that suit where the output goes.

On a terminal, a live tqdm bar. When stderr is a pipe or a file (CI, ``nohup``, a job log), redrawn bars
would flood the log with carriage-return frames, so the bar prints one plain line every
``PWB_PROGRESS_INTERVAL`` seconds (default 30) and a last one when it closes.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def progress_bar(iterable: Any = None, **kwargs: Any):
    """A tqdm bar (same arguments); periodic one-line logs instead when stderr is not a terminal."""
    from tqdm.auto import tqdm

    stream = kwargs.pop("file", None) or sys.stderr
    if kwargs.get("disable") or _is_terminal(stream):
        return tqdm(iterable, file=stream, **kwargs)
    interval = float(os.environ.get("PWB_PROGRESS_INTERVAL", "30"))
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0), interval)  # a caller's fast refresh is for terminals
    kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0), kwargs["mininterval"])
    kwargs.pop("leave", None)  # a log keeps every line anyway
    return _line_bar_class()(iterable, file=stream, ascii=True, dynamic_ncols=False, ncols=100, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_LINE_BAR = None


def _line_bar_class():
    """tqdm with each refresh written as its own line (built on first use: tqdm is imported lazily)."""
    global _LINE_BAR
    if _LINE_BAR is None:
        from tqdm import tqdm

        class LineBar(tqdm):
            def display(self, msg=None, pos=None):  # one line per refresh, no carriage returns
                text = (msg if msg is not None else self.__str__()).strip()
                if text:
                    self.fp.write(text + "\n")
                    self.fp.flush()
                return True

        _LINE_BAR = LineBar
    return _LINE_BAR
