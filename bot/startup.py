"""The one line ``python -m bot`` prints when it cannot start."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .config import ENV_DEFAULTS
from .errors import ConfigError, StartupError
from .redact import redact_text

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def error_line(exc: StartupError, env: Mapping[str, str]) -> str:
    """``error: ...`` for ``exc``, any URL in it redacted.

    A bad key whose value the environment supplies names the variable too
    (``config: storage.url (DATABASE_URL): ...``): that is where the user fixes it.
    """
    text = str(exc)
    if isinstance(exc, ConfigError) and not exc.names_source:
        var = env_var_for(exc.path)
        if var is not None and env.get(var):
            text = f"config: {exc.path} ({var}): {exc.problem}"
    return f"error: {redact_text(text)}"


def env_var_for(path: str) -> str | None:
    """The environment variable that fills the key ``path`` by default, if any."""
    match = _VAR.match(ENV_DEFAULTS.get(path, ""))
    return match.group(1) if match else None
