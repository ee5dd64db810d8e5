"""Redaction: credentials and the values of secret-looking environment variables never reach a trace."""

from __future__ import annotations

import os
import re
from collections.abc import Collection

__all__ = ["REDACTED", "redact", "env_secrets"]

REDACTED = "[REDACTED]"

_SECRET_PATTERN = re.compile(
    "|".join(
        (
            r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
            r"\bsk-[A-Za-z0-9_\-]{16,}",  # OpenAI-style
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
            r"\bhf_[A-Za-z0-9]{20,}",  # Hugging Face
            r"\bAIza[0-9A-Za-z_\-]{30,}",  # Google
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{16,}",  # HTTP bearer credentials
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        )
    )
)
# "api_key=...", "password: ...", '"token": "..."': keep the name, drop the value.
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:x-)?api[_\-]?key|secret|password|passwd|token|authorization)([\"']?\s*[:=]\s*[\"']?)"
    r"[A-Za-z0-9_\-./+=~]{8,}"
)
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|password|passwd|credential|auth)")


def env_secrets() -> tuple[str, ...]:
    """Values of secret-looking environment variables (long enough to be real)."""
    return tuple(v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8)


# Cheap substring checks (on the lower-cased text) that must pass before a regex can match:
# scanning kilobytes of retrieved passages with the regexes alone costs milliseconds.
_PATTERN_MARKERS = ("sk-", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "hf_", "aiza", "eyj",
                    "private key", "bearer")
_ASSIGNED_MARKERS = ("key", "secret", "passw", "token", "authorization")


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """`text` with anything that looks like a credential replaced by "[REDACTED]".

    Args:
        text: any string about to be recorded.
        secrets: exact values to remove as well (e.g. the API key in use).

    Returns:
        The text, with API keys, bearer tokens, JWTs, private keys, `name=value` assignments of
        keys/tokens/passwords, and each of `secrets` redacted.
    """
    if len(text) < 8:  # shorter than any credential
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    low = text.lower()
    if any(m in low for m in _PATTERN_MARKERS):
        text = _SECRET_PATTERN.sub(REDACTED, text)
    if any(m in low for m in _ASSIGNED_MARKERS):
        text = _ASSIGNED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text
