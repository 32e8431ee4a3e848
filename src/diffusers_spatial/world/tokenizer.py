"""The world's CLIP tokenizer: a real `CLIPTokenizer` (byte-level BPE) whose merges make every world word one token.

Real CLIP's 49k merges are out of reach offline, and a tokenizer without merges spells every word letter by letter,
which a tiny text encoder then has to reassemble. This one keeps CLIP's byte-level layout (256 byte symbols, their
end-of-word forms, `<|startoftext|>` and `<|endoftext|>` as the two largest ids, padding with end-of-text as SD 1.x
does) and adds exactly the merges that build the world's words, so "a red circle to the left of a blue square" is
eleven tokens plus start and end. Any other text still tokenizes, letter by letter.

Examples:

```py
>>> from diffusers_spatial.world.tokenizer import world_tokenizer
>>> tokenizer = world_tokenizer()
>>> tokenizer.tokenize("a red circle to the left of a blue square")[:4]
['a</w>', 'red</w>', 'circle</w>', 'to</w>']
>>> tokenizer.model_max_length, tokenizer.pad_token
(16, '<|endoftext|>')

```
"""

from __future__ import annotations

from transformers import CLIPTokenizer

from ..relations import CANONICAL_PHRASE
from ..utils.tiny_models import byte_level_alphabet
from .config import WorldConfig

__all__ = ["world_tokenizer", "world_words"]


def world_words(config: WorldConfig) -> list[str]:
    """Every word a world caption or prompt uses: articles, "and", relation phrases, colours and shapes."""
    words = ["a", "an", "and"]
    for phrase in CANONICAL_PHRASE.values():
        words += phrase.split()
    words += list(config.color_names) + list(config.shapes)
    return list(dict.fromkeys(words))


def _bpe(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: repeatedly merge the adjacent pair of lowest rank."""
    while len(parts) > 1:
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(parts, parts[1:])))
        if rank == len(ranks):
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
    return parts


def world_tokenizer(config: WorldConfig | None = None, model_max_length: int = 16) -> CLIPTokenizer:
    """A `CLIPTokenizer` built in memory for the world's words (see the module docstring)."""
    config = config or WorldConfig()
    symbols = byte_level_alphabet()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in world_words(config):
        # Merges are added until BPE (which applies earlier merges first) turns the word into one token.
        while len(parts := _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)) > 1:
            ranks[(parts[0], parts[1])] = len(merges)
            merges.append((parts[0], parts[1]))
            vocab.setdefault(parts[0] + parts[1], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
