"""Prompt paraphrases (BertNet, specs/bertnet.md step 1).

Each kept prompt is filled with each seed tuple and paraphrased by a generator
(a local causal LM given ``"paraphrase:\\n{sent}\\n"``, sampled at temperature
1, or nothing but the user's own list). The seed entities are mapped back to
slots with small string transforms (drop a/the, is/are, -ing); a candidate
is valid only if each slot appears exactly once, and is kept only if its fuzzy
ratio to every kept prompt is below 75. Rounds stop at 10 prompts or when a
round adds nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

from luminary.harvest.relations import check_prompt

MAX_PROMPTS = 10
MAX_RATIO = 75.0
PARAPHRASE_INPUT = "paraphrase:\n{sent}\n"

Generator = Callable[[str], list[str]]  # a filled sentence -> its paraphrases


def fuzzy_ratio(a: str, b: str) -> float:
    """rapidfuzz.fuzz.ratio (0..100) when installed, else difflib's ratio × 100 (the same on most strings)."""
    try:
        from rapidfuzz import fuzz
    except ImportError:
        from difflib import SequenceMatcher

        return 100.0 * SequenceMatcher(None, a, b).ratio()
    return float(fuzz.ratio(a, b))


def fill(prompt: str, entities: Sequence[str]) -> str:
    return re.sub(r"<ENT(\d+)>", lambda m: entities[int(m.group(1))], prompt)


def variants(entity: str) -> list[str]:
    """The entity and its small transforms: without a/an/the, is<->are, without -ing."""
    out = [entity]
    bare = re.sub(r"^(a|an|the)\s+", "", entity, flags=re.I)
    out.append(bare)
    for text in list(out):
        out.append(re.sub(r"\bis\b", "are", text))
        out.append(re.sub(r"\bare\b", "is", text))
        out.append(re.sub(r"(\w{3,})ing\b", r"\1", text))  # jumping -> jump
        out.append(re.sub(r"(\w{2,}?)(\w)\2ing\b", r"\1\2", text))  # swimming -> swim
        out.append(re.sub(r"(\w{2,})ing\b", r"\1e", text))  # making -> make
    return list(dict.fromkeys(v for v in out if v.strip()))


def to_template(sentence: str, entities: Sequence[str]) -> str | None:
    """Replace each seed entity (or a variant) by its slot; None unless every slot lands exactly once."""
    text = sentence.strip()
    for i in sorted(range(len(entities)), key=lambda i: -len(entities[i])):  # longest first: no partial hits
        for form in variants(entities[i]):
            pattern = re.compile(r"(?<!\w)(?:(?:a|an|the)\s+)?" + re.escape(form) + r"(?!\w)", re.I)
            hits = pattern.findall(text)
            if len(hits) == 1:
                text = pattern.sub(f"<ENT{i}>", text)
                break
        else:
            return None
    return text if check_prompt(text, len(entities)) is None else None


def paraphrase_prompts(prompt: str, seeds: Sequence[Sequence[str]], given: Sequence[str] = (),
                       generator: Generator | None = None, max_prompts: int = MAX_PROMPTS,
                       max_ratio: float = MAX_RATIO) -> list[str]:
    """The initial prompt, the user's paraphrases, then generated ones that pass the checks."""
    kept = list(dict.fromkeys([prompt, *given]))
    if generator is None:
        return kept
    frontier = list(kept)
    while frontier and len(kept) < max_prompts:
        added: list[str] = []
        for source in frontier:
            for seed in seeds:
                for sentence in generator(fill(source, seed)):
                    candidate = to_template(sentence, seed)
                    if candidate is None or len(kept) >= max_prompts:
                        continue
                    if all(fuzzy_ratio(candidate, k) < max_ratio for k in kept):
                        kept.append(candidate)
                        added.append(candidate)
        frontier = added
    return kept


def hf_paraphraser(model_dir: str | Path, num: int = 4, max_new_tokens: int = 40, seed: int = 0,
                   allow_pickle: bool = False) -> Generator:
    """A generator from any local causal-LM folder: ``paraphrase:\\n{sent}\\n``, sampled at temperature 1."""
    import torch
    from transformers import AutoModelForCausalLM

    from luminary.models.loading import load_model, load_tokenizer

    model = load_model(model_dir, AutoModelForCausalLM, allow_pickle=allow_pickle).eval()
    tokenizer = load_tokenizer(model_dir)
    generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def paraphrase(sentence: str) -> list[str]:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        inputs = tokenizer(PARAPHRASE_INPUT.format(sent=sentence), return_tensors="pt")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=max_new_tokens,
                             num_return_sequences=num, pad_token_id=pad)
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [t.strip().split("\n")[0].strip() for t in texts if t.strip()]

    return paraphrase
