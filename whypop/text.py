"""Text from the user's files made safe to print: control characters shown, not obeyed.

A file or folder name can hold escape sequences (one can retitle the terminal or erase
lines) or bidirectional overrides (one can reorder what a line appears to say). Every
line the command line prints from stored names goes through :func:`visible`.
"""

from __future__ import annotations

import unicodedata

__all__ = ["visible"]


def visible(text: object, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters written as escapes (``\\x1b``, ``\\u202e``).

    Tabs become spaces; newlines stay only with ``keep_newlines`` (a report of several lines).
    """
    out = []
    for ch in str(text):
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)
