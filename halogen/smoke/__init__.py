"""`halogen smoke`: check a deployed endpoint by chatting, embedding and reranking with each of
its models through the OpenAI and Ollama APIs, and measure how fast each loads and answers.
A client of the served API only: it imports nothing of the runtime."""
