"""What one GGUF header states, as halogen records it: the `gguf` facts of a `halogen.lock`
entry, read from a file by halogen.llamacpp.gguf_header (or from the Hub by byte ranges) and
used by the memory estimate and the Ollama API. A record only: no file is read here."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

InfoValue = str | int | float | bool | list[int] | list[float] | list[bool]

MAX_COUNT = 2**64 - 1
"""The largest number a GGUF header holds (uint64): no fact read from one is larger."""
MAX_BLOCK_COUNT = 512
"""Layers: llama.cpp loads no model with more (LLAMA_MAX_LAYERS, src/llama-hparams.h); Llama 3.1
405B, the deepest released model, has 126. A lock edited past it would have the estimate walk
every layer."""
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class GgufFacts(BaseModel):
    """What one GGUF header states, in the names the estimate and the Ollama API use.

    Per-layer values (head counts) are a list when the file gives one per layer, as llama.cpp
    accepts (`llama_model_loader::get_key_or_arr`, src/llama-model-loader.cpp)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    architecture: str
    name: str = ""
    fileType: str = Field(description="Quantization as llama.cpp names it: Q4_1, Q5_K_M, MXFP4_MOE...")
    parameterCount: int = Field(
        ge=0, le=MAX_COUNT, description="Elements in all tensors, as Ollama counts them."
    )
    tensorBytes: int = Field(
        ge=0, le=MAX_COUNT, description="Bytes of tensor data: the weights llama.cpp loads."
    )
    contextLength: int = Field(ge=0, le=MAX_COUNT, description="The trained context length.")
    blockCount: int = Field(ge=0, le=MAX_BLOCK_COUNT)
    embeddingLength: Count
    feedForwardLength: Count | list[Count] = 0
    vocabSize: Count = 0
    headCount: Count | list[Count] = 0
    headCountKv: Count | list[Count] = 0
    keyLength: int = Field(0, ge=0, le=MAX_COUNT, description="Per-head key size (n_embd_head_k).")
    valueLength: int = Field(0, ge=0, le=MAX_COUNT, description="Per-head value size (n_embd_head_v).")
    kvLoraRank: int = Field(0, ge=0, le=MAX_COUNT, description="MLA (deepseek2): the compressed KV rank.")
    ropeDimensionCount: int = Field(0, ge=0, le=MAX_COUNT)
    slidingWindow: int = Field(0, ge=0, le=MAX_COUNT, description="Tokens a sliding-window layer attends to.")
    slidingWindowLayers: list[Count] = Field([], description="Indices of the layers that use it.")
    expertCount: int = Field(0, ge=0, le=MAX_COUNT)
    expertUsedCount: int = Field(0, ge=0, le=MAX_COUNT)
    expertFeedForwardLength: int = Field(0, ge=0, le=MAX_COUNT, description="One expert's FFN width (MoE).")
    info: dict[str, InfoValue] = Field(
        {}, description="The header's general.* and <arch>.* keys, as Ollama's model_info gives them."
    )

    @field_validator("feedForwardLength", "headCount", "headCountKv")
    @classmethod
    def _one_per_layer(cls, value: int | list[int], info: ValidationInfo) -> int | list[int]:
        """llama.cpp takes a per-layer array of exactly one value per layer
        (`llama_model_loader::get_key_or_arr`, src/llama-model-loader.cpp)."""
        layers = info.data.get("blockCount")
        if isinstance(value, list) and isinstance(layers, int) and (len(value) != layers or not value):
            raise ValueError(f"{len(value)} values for {layers} layers (blockCount): give one per layer")
        return value

    @field_validator("slidingWindowLayers")
    @classmethod
    def _layers(cls, value: list[int], info: ValidationInfo) -> list[int]:
        layers = info.data.get("blockCount")
        if isinstance(layers, int) and any(il >= layers for il in value):
            raise ValueError(f"layer {max(value)} is past the {layers} layers (blockCount)")
        return value

    def per_layer(self, value: int | list[int], layer: int) -> int:
        return value[layer] if isinstance(value, list) else value
