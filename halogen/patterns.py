"""Patterns that input strings must match, and the hint a diagnostic gives when one does not."""

from __future__ import annotations

from typing import Final

ENV_NAME: Final = r"^[A-Z_][A-Z0-9_]*$"
ONE_LINE: Final = r"^[^\n\r\x00]*$"
NO_NUL: Final = r"^[^\x00]*$"
MACRO_NAME: Final = r"^[a-zA-Z0-9_-]{1,63}$"
"""llama-swap's rule for a macro name."""
BACKEND_ID: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DEVICE: Final = r"^/dev(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$"
"""A device path: absolute, normalised (no '.', '..', '//' or trailing '/'), under /dev."""
EXTENDED_RESOURCE: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
"""Kubernetes' extended resource name: a domain, '/', a name."""
QUANTITY: Final = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ALLOWED_HOST: Final = (
    r"^(\*|\.?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*)$"
)
"""A host name the proxy answers to (`--allow-host`): a name, a domain with a leading dot, or *."""

HINTS: Final = {
    ENV_NAME: "environment variable names are upper-case letters, digits and '_'",
    ONE_LINE: "one line, without NUL bytes",
    NO_NUL: "without NUL bytes: no command line can hold one",
    BACKEND_ID: "backend ids become macro names: lower-case letters, digits, '_' and '-', at most 63",
    DEVICE: "an absolute path under /dev without '.', '..', '//' or a trailing '/', e.g. /dev/dri",
    EXTENDED_RESOURCE: "an extended resource: a domain, '/', a name, e.g. amd.com/gpu",
    QUANTITY: "a Kubernetes quantity: e.g. 32Gi, 512Mi, 500m, or a whole number",
    ALLOWED_HOST: "a host name without scheme or port (chat.lan), a domain with a leading dot "
    "for every name under it (.lan), or *",
}

# Words for the other patterns of the input models, so that no diagnostic shows a regex.
WORDS: Final = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "a Kubernetes name: lower-case letters, digits and '-', "
    "starting and ending with a letter or digit",
    r"^[\w][\w.-]{0,127}$": "an image tag: letters, digits, '_', '.' and '-', at most 128",
    r"^sha256:[0-9a-f]{64}$": "sha256: and 64 lower-case hex digits",
    r"^/[^\n\x00]*$": "an absolute path, starting with /",
    r"^[0-9a-fA-F:.]+$": "an IP address, e.g. 192.168.1.10",
    r"^1\.[0-9]+$": 'a Kubernetes version such as "1.32", quoted',
    r"^/[^\s\x00]*$": "an absolute path without spaces",
    r"^[A-Za-z0-9._-]+$": "letters, digits, '.', '_' and '-'",
    r"^[a-zA-Z0-9_]+$": "a parameter name: letters, digits and '_'",
    r"^/[^\s]*$|^none$": "a path starting with / (without spaces), or none",
    r"^[^\s\x00]{1,128}$": "no spaces, at most 128 characters",
    MACRO_NAME: "letters, digits, '_' and '-', at most 63",
    r"^(\*|https?://[^/\s]+)$": "an origin, scheme and host without a path (http://chat.lan:3000), or *",
    r"^[-._a-zA-Z0-9]+$": "a Secret key: letters, digits, '-', '_' and '.'",
    r"^[-._a-zA-Z0-9]{1,253}$": "a Secret key: letters, digits, '-', '_' and '.', at most 253",
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$": "a Hugging Face repository, "
    "<org>/<name>, e.g. Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
    r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$": "a revision: a commit hash (40 hex digits), a branch or a tag",
    r"^[^/\n\x00][^\n\x00]*\.gguf$": "a relative path in the repository that ends in .gguf",
    r"^[^\s\x00]{1,256}$": "a model name without spaces, at most 256 characters",
    r"^https?://[^\s/]+(/[^\s]*)?$": "an http:// or https:// URL without spaces, e.g. http://box2.lan:8080",
    r"^https?://[^\s\x00]+$": "an http:// or https:// URL without spaces",
    r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|[0-9a-fA-F:.]+)$": "an IP "
    "address or a DNS name, without scheme or port, e.g. 192.168.68.101 or halo-b.lan",
    r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$": "a label value: letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit",
}
