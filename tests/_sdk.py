"""fastapi_poe, Poe's official SDK, imported once with its own deprecation warnings silenced.

fastapi_poe 0.0.83 still uses pydantic's class-based `Config`, which warns at import; the
suite turns warnings into errors, and that warning is not ours to fix.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import fastapi_poe.client as client
    import fastapi_poe.types as types

__all__ = ["client", "types"]
