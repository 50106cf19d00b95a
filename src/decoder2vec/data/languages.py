"""The languages decoder2vec adapts a model to: one definition each, as data.

`LANGUAGES` maps a code to its `Language`: the name, the evaluation suite with its tasks, the
packaged recipe folder of each recipe (`RECIPES`; each folder has a quick/ flavour) and the
packaged sources its recipes train on (registry.py), so a test can check that every recipe names
only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import choices_error

# The recipes a language is adapted with (`adapt(recipe=...)`, `decoder2vec adapt --recipe`):
# distill - one stage: the packaged all-MiniLM-L6-v2's similarities on en->language translations;
# paper   - LLM2Vec's chain, MNTP -> SimCSE -> supervised, on the language's own text.
RECIPES = ("distill-embeddinggemma", "distill", "paper")


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    suite: str  # evaluation suite with this language's tasks
    recipes: dict[str, str] = field(hash=False)  # recipe (RECIPES) -> packaged recipe folder, which has a quick/
    corpora: tuple[str, ...]  # prose for MNTP and SimCSE: man pages and the training help pages
    pairs: tuple[str, ...]  # supervised and distill pairs: translations, titles and section headings of the training help pages, man page summaries, STS-B

    @property
    def sources(self) -> tuple[str, ...]:
        return self.corpora + self.pairs


LANGUAGES = {
    "da": Language("da", "Danish", "da", {"distill-embeddinggemma": "gemma3-270m-da/distill-embeddinggemma",
                                          "distill": "gemma3-270m-da/distill", "paper": "gemma3-270m-da"},
                   corpora=("manpages-da", "libreoffice-help-da-train"),
                   pairs=("libreoffice-en-da-train", "libreoffice-titles-da-train", "libreoffice-headings-da-train",
                          "manpage-summaries-da",
                          "package-descriptions-da", "stsb-en-train")),
    "de": Language("de", "German", "de", {"distill-embeddinggemma": "gemma3-270m-de/distill-embeddinggemma",
                                          "distill": "gemma3-270m-de/distill", "paper": "gemma3-270m-de"},
                   corpora=("manpages-de", "libreoffice-help-de-train"),
                   pairs=("stsb-de-train", "libreoffice-en-de-train", "libreoffice-titles-de-train",
                          "libreoffice-headings-de-train", "manpage-summaries-de",
                          "package-descriptions-de",
                          "stsb-en-train")),
}


def get_language(code: str) -> Language:
    if code not in LANGUAGES:
        raise choices_error("language", code, LANGUAGES)
    return LANGUAGES[code]
