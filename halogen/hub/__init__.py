"""Models from the Hugging Face Hub to the models folder: `halogen pull`."""
