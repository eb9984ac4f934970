"""One module per command; each is a plain function returning an exit code."""
