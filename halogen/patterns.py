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

HINTS: Final = {
    ENV_NAME: "environment variable names are upper-case letters, digits and '_'",
    ONE_LINE: "one line, without NUL bytes",
    NO_NUL: "without NUL bytes: no command line can hold one",
    BACKEND_ID: "backend ids become macro names: lower-case letters, digits, '_' and '-', at most 63",
    DEVICE: "an absolute path under /dev without '.', '..', '//' or a trailing '/', e.g. /dev/dri",
    EXTENDED_RESOURCE: "an extended resource: a domain, '/', a name, e.g. amd.com/gpu",
    QUANTITY: "a Kubernetes quantity: e.g. 32Gi, 512Mi, 500m, or a whole number",
}
