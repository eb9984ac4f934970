"""The llama-swap config contract: written by `halogen build`, read by `halogen serve`."""
