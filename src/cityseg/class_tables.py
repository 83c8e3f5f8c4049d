"""The former name of :mod:`cityseg.user_classes` (a user's class table file); its names, re-exported.

Kept so code written against ``cityseg.class_tables`` keeps working; new code imports ``cityseg.user_classes``.
"""

from __future__ import annotations

from cityseg.user_classes import (
    CLASS_KEYS,
    DEFAULT_IGNORE,
    TABLE_FILE,
    TABLE_KEYS,
    normalize_table,
    read_class_table,
    table_yaml,
)

__all__ = [
    "CLASS_KEYS",
    "DEFAULT_IGNORE",
    "TABLE_FILE",
    "TABLE_KEYS",
    "normalize_table",
    "read_class_table",
    "table_yaml",
]
