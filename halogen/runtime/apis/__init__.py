"""The APIs, one module or package per family: `openai` (and llama.cpp's own routes),
`anthropic`, `ollama/`, and llama-swap's `management` routes. Each family registers its routes
with the error shape its clients read (halogen.runtime.base.shapes). `/metrics` is written by
`exposition`, with the memory `observed` reads and the llama-servers' own series (`federation`)."""
