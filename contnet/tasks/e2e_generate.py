"""Beam-search decoding for data-to-text, as the LoRA NLG recipe does it (spec §B4/§B5), via transformers
`generate`: beam 10, length penalty 0.8 (score = Σ log p / generated_len^0.8), at most 64 new tokens, stop at
end-of-text or a blank line ("\\n\\n", a single token in the GPT-2 and SmolLM2 vocabularies), then cut the text
at the first blank line.

No-repeat-ngram (4) is our own logits processor: transformers' built-in one also counts the prompt, which
would forbid copying any 4-gram of the MR ("more than £ 30") into the text; the LoRA decoder only looks at the
generated tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationSettings:
    num_beams: int = 10
    length_penalty: float = 0.8
    no_repeat_ngram_size: int = 4
    max_new_tokens: int = 64
    batch_size: int = 8              # MRs decoded together (left-padded)
    early_stopping: bool = True      # stop a beam group once num_beams hypotheses ended (the LoRA decoder always
                                     # runs 64 steps; with eos at most 64 tokens the difference is speed only)


def make_no_repeat_processor(n: int, prompt_len: int):
    from transformers import LogitsProcessor

    class GeneratedNoRepeatNGram(LogitsProcessor):
        """Ban tokens that would repeat an n-gram of the *generated* part (columns ≥ prompt_len)."""

        def __call__(self, input_ids, scores):
            gen = input_ids[:, prompt_len:]
            t = gen.shape[1]
            if n <= 0 or t < n - 1 or t == 0:
                return scores
            rows = gen.tolist()
            for b, seq in enumerate(rows):
                prefix = tuple(seq[t - n + 1:]) if n > 1 else ()
                banned = [seq[i + n - 1] for i in range(t - n + 1) if tuple(seq[i:i + n - 1]) == prefix]
                if banned:
                    scores[b, banned] = -float("inf")
            return scores

    return GeneratedNoRepeatNGram()


def stop_token_ids(tokenizer) -> list[int]:
    ids = [tokenizer.eos_token_id]
    blank = tokenizer.encode("\n\n", add_special_tokens=False)
    if len(blank) == 1 and blank[0] not in ids:
        ids.append(blank[0])
    return ids


def cut_text(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


def unwrap_generate(model):
    """The object that has `.generate` (a peft wrapper has it; torch.compile'd modules keep `_orig_mod`)."""
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], settings: GenerationSettings, device) -> list[str]:
    """Decode one text per prompt (token-id lists that already end with the separator)."""
    from transformers import LogitsProcessorList
    gen_model = unwrap_generate(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer)
    outputs: list[str] = []
    for start in range(0, len(prompts), max(1, settings.batch_size)):
        chunk = prompts[start:start + settings.batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for k, p in enumerate(chunk):                     # left padding: every prompt ends at column width-1
            ids[k, width - len(p):] = torch.tensor(p)
            mask[k, width - len(p):] = 1
        processors = LogitsProcessorList()
        if settings.no_repeat_ngram_size > 0:
            processors.append(make_no_repeat_processor(settings.no_repeat_ngram_size, width))
        out = gen_model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
            num_beams=settings.num_beams, length_penalty=settings.length_penalty,
            max_new_tokens=settings.max_new_tokens, early_stopping=settings.early_stopping,
            eos_token_id=stops, pad_token_id=pad, logits_processor=processors, num_return_sequences=1)
        for row in out[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            outputs.append(cut_text(tokenizer.decode(row[:cut], skip_special_tokens=True)))
    return outputs
