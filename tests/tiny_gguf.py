"""Tiny random-weight GGUF models for tests: llama architecture, loads and generates in milliseconds.

The vocabulary is SentencePiece-style with byte fallback: <unk>, <s>, </s>, the 256 byte tokens
<0x00>..<0xFF>, then printable pieces ("▁the", "▁a", letters, punctuation, "```"). The chat variant
adds <|user|>, <|assistant|>, <|end|> as control tokens (<|end|> is the end-of-turn token) and a
jinja chat template that uses them. Weights are random (seeded), so the text is gibberish, but
varied at T > 0 and reproducible for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 8192

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "is",
    "in",
    "it",
    "that",
    "answer",
    "query",
    "yes",
    "no",
    "people",
    "think",
    "because",
    "some",
    "many",
    "can",
    "not",
]
_PUNCT = [".", ",", "?", "!", ":", "#", "`", "```", "-", "\n", "\n\n", "1", "2", "3", "é"]

# gguf token types
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def tiny_vocab(*, chat: bool) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    pieces: list[str] = ["▁"]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + w for w in _WORDS] + [w for w in _WORDS if len(w) > 1]
    pieces += _PUNCT
    pieces = list(dict.fromkeys(pieces))  # drop repeats, keep the order
    tokens += pieces
    types += [_NORMAL] * len(pieces)
    if chat:
        tokens += ["<|user|>", "<|assistant|>", "<|end|>"]
        types += [_CONTROL] * 3
    # SentencePiece merges prefer higher scores: longer pieces score higher.
    scores = [0.0] * len(tokens)
    for i, (tok, typ) in enumerate(zip(tokens, types, strict=True)):
        if typ == _NORMAL:
            scores[i] = float(len(tok)) - i * 1e-4
    return tokens, scores, types


def write_tiny_llama(path: str | Path, *, chat: bool = False, seed: int = 0) -> Path:
    """Write a random-weight llama GGUF (dim 64, 2 layers, f32) to ``path`` and return the path."""
    import gguf

    path = Path(path)
    tokens, scores, types = tiny_vocab(chat=chat)
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-chat" if chat else "tiny-llama-base")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all f32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat:
        writer.add_eot_token_id(tokens.index("<|end|>"))
        writer.add_chat_template(CHAT_TEMPLATE)

    head_dim = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, 1.0))
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(prefix + "attn_q.weight", weight(N_EMBD, N_EMBD, 0.2))
        writer.add_tensor(prefix + "attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD, 0.2))
        writer.add_tensor(prefix + "attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD, 0.2))
        writer.add_tensor(prefix + "attn_output.weight", weight(N_EMBD, N_EMBD, 0.1))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", weight(N_FF, N_EMBD, 0.2))
        writer.add_tensor(prefix + "ffn_up.weight", weight(N_FF, N_EMBD, 0.2))
        writer.add_tensor(prefix + "ffn_down.weight", weight(N_EMBD, N_FF, 0.1))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    # Logits with a spread of a few units: varied text at T=1, but not uniform noise.
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD, 0.3))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
