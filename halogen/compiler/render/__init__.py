"""From a checked `Site` to the bytes of `out/`."""
