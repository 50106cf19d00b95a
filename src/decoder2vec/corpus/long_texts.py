"""Long texts cost what max_length tokens cost, not what their characters cost.

An Encoder reads only a text's first max_length tokens, but a tokenizer given a 20 MB line
tokenizes all of it (gigabytes of offsets) before anything is cut. So the corpus reader keeps a
line's first `text_limit` characters, and `fit_texts` hands the Encoder a prefix just long enough
for its tokens to be the text's own first tokens (checked by tokenizing the prefix).

Why a prefix gives the same vector: the Encoder keeps the text's first max_length tokens, and a
cut changes only the tokens around it (the last word); a prefix whose tokens reach MARGIN past
max_length has the same first max_length tokens as the whole text.
"""

from __future__ import annotations

import weakref
from typing import Sequence

from ..errors import Decoder2VecError

MARGIN = 64  # tokens a prefix must reach past max_length
FIRST_CUT_CHARS_PER_TOKEN = 8  # the first prefix tried; doubled until it holds enough tokens
# A token spells at most its own length in characters; normalizers that compose characters (NFC)
# can shrink text a few times, so the reader keeps this many times more.
SAFETY = 4

_longest: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def longest_token(tokenizer) -> int:
    """The most characters any token of the vocabulary (added tokens included) spells."""
    try:
        return _longest[tokenizer]
    except (KeyError, TypeError):
        pass
    longest = max(map(len, tokenizer.get_vocab()), default=1)
    try:
        _longest[tokenizer] = longest
    except TypeError:
        pass
    return longest


def text_limit(tokenizer, max_length: int) -> int:
    """Characters of a text the reader keeps: enough for max_length + MARGIN tokens of any text."""
    return longest_token(tokenizer) * (max_length + MARGIN) * SAFETY


def fit_texts(tokenizer, max_length: int, texts: Sequence[str], *, read_limit: int | None = None,
              where=None) -> list[str]:
    """Each text, or a prefix of it with the same first max_length tokens. `read_limit`: the
    reader kept only that many characters of a line, so a text that long may be cut already; it
    must then still hold enough tokens (else an error, never a different vector). `where(i)`
    names text i in that error."""
    first_cut = FIRST_CUT_CHARS_PER_TOKEN * (max_length + MARGIN)
    need = max_length + MARGIN
    out = []
    for i, text in enumerate(texts):
        cut = first_cut
        while text is not None and len(text) > cut:
            if _tokens(tokenizer, text[:cut]) >= need:
                text = text[:cut]
                break
            cut *= 2
        else:
            if read_limit is not None and text is not None and len(text) >= read_limit \
                    and _tokens(tokenizer, text) < need:
                name = where(i) if where else f"text {i}"
                raise Decoder2VecError(
                    f"{name}: its first {read_limit} characters make fewer than max_length + {MARGIN} = {need} "
                    "tokens, so the line kept in memory may not hold the tokens the model reads; "
                    "lower --max-length or split the line")
        out.append(text)
    return out


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
