"""Strings HDF5 cannot hold as they are, stored losslessly.

HDF5 variable-length strings end at the first NUL and must be valid UTF-8, but
sources do produce both: a NUL inside a value, or a lone surrogate (Python decodes
undecodable bytes of command lines and file names with ``surrogateescape``). Such a
string, and any string that starts with ESC, is stored as ESC followed by its JSON
encoding in ASCII; every other string is stored as it is.
"""

from __future__ import annotations

import json

ESC = "\x1b"


def needs_escape(text: str) -> bool:
    if "\x00" in text or text.startswith(ESC):
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def store(text: str) -> str:
    return ESC + json.dumps(text, ensure_ascii=True) if needs_escape(text) else text


def load(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text[1:]) if text.startswith(ESC) else text
