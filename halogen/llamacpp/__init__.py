"""What halogen knows of llama.cpp's llama-server: how it reads its command line."""
