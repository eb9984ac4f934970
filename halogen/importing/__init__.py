"""`halogen import`: an existing llama-swap config (and its Kubernetes manifests) as a halogen site."""
