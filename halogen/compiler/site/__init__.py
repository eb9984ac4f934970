"""What the user writes: `halogen.yaml` (the site) and one file per model in `models.d/`."""
