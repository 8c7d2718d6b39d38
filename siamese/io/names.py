"""The one rule for a person's name, wherever it is used: the gallery, collected training faces,
folder exports. Stdlib only.

A name is a display label, 1-100 characters: letters and digits of any script, spaces and
- _ . ' (so "Zoë O'Brien-Smith" and "José" work), starting with a letter or digit. Path
characters ('/', '\\', '..') are refused rather than escaped, since names also become folder
names, and "unknown" is reserved: it is what recognition prints for a stranger. Names are
normalised to Unicode NFC, so a macOS (NFD) "José" folder and a typed "José" are one person.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["BadName", "BadSetting", "UNKNOWN", "check_name"]

UNKNOWN = "unknown"
_NAME = re.compile(r"[^\W_][\w .'-]{0,99}")  # starts with a letter or digit; unicode welcome


class BadName(ValueError):
    """A person name that breaks the rule; the message quotes it and says what is allowed."""


class BadSetting(ValueError):
    """A setting the user gave (key=value) that the command cannot use, or one it needs and was
    not given: a command-line mistake, so the command line's exit code 2 (`siamese.cli`)."""


def check_name(name: str) -> str:
    """`name` stripped and NFC-normalised, or `BadName` naming what is allowed."""
    n = unicodedata.normalize("NFC", str(name)).strip()
    if not _NAME.fullmatch(n) or ".." in n or n.lower() == UNKNOWN:
        raise BadName(f"person name {name!r}: use letters, digits, spaces, '-', '_', '.' or "
                      f"\"'\" (no '/', '\\' or '..'; {UNKNOWN!r} is reserved) — rename it")
    return n
