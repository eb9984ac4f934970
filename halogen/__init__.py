"""halogen: one YAML file per model in, a Flux-ready llama-swap deployment out."""

__version__ = "0.1.0"
