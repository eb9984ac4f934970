"""`halogen serve`: run a llama-swap config: processes, swapping, routes, Ollama translation."""
