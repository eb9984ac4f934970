"""What halogen knows of llama.cpp: llama-server's command line (`llama_flags`, the table
generated from common/arg.cpp by `argcpp`, and `cmdline`, the one reader of a command) and the
GGUF header (`gguf_header`).

Followed at llama.cpp 0c1e57098bba43ac29e6e3b677cdceebdd22334f, the commit inside the
llama-cpp-python 0.3.36 sdist the tests build; citations of llama.cpp files in halogen point
to that commit."""
