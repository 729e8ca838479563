"""A small language encoder for missions, trained from scratch here (nothing downloaded).

    vocabulary = Vocabulary.from_sentences(["go to the red ball", "put the key next to the box"])
    encoder = SentenceEncoder(max_words=64, dim=32, out_dim=16)
    encoder.set_vocabulary(vocabulary)
    goals = encoder.embed(["go to the red ball"])            # (1, 16)

A sentence is lower-cased and split into words of letters (`tokenize`); the vocabulary is
the words of the dataset's annotations. A word it lacks is `<unk>` (id 1): a held-out
mission may name a colour no kept annotation named, and should still encode;
`Vocabulary.unknown` lists such words, and `strict=True` makes them an error.

Word order matters ("put the red ball next to the blue key" is not its swap), so the
encoder is a GRU over word embeddings, not a mean of them. The vocabulary lives in the
encoder as a buffer of bytes, so that a policy snapshot alone can read missions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ditto.errors import ConfigError

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
WORD_BYTES = 16  # the longest word a vocabulary stores (BabyAI's longest: 6 letters)
_WORD = re.compile(r"[a-z]+")


def tokenize(sentence: str) -> list[str]:
    """'Go to the red ball, then open a door' -> ['go', 'to', 'the', 'red', 'ball', 'then', ...]."""
    return _WORD.findall(sentence.lower())


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # words[i] is id i; words[0] is PAD, words[1] is UNK

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> Vocabulary:
        """PAD, UNK, then the sentences' words in sorted order (the same ids on every run)."""
        return cls((PAD, UNK, *sorted({w for s in sentences for w in tokenize(s)})))

    def __len__(self) -> int:
        return len(self.words)

    def unknown(self, sentences: Iterable[str]) -> set[str]:
        """The words of `sentences` that this vocabulary lacks."""
        known = set(self.words)
        return {w for s in sentences for w in tokenize(s) if w not in known}

    def encode(
        self, sentences: Sequence[str], strict: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Word ids (B, L) padded with PAD, and each sentence's length (B,) (at least 1: an
        empty sentence is one PAD). strict: an unknown word is an error, not UNK."""
        if strict and (missing := self.unknown(sentences)):
            raise ConfigError(f"words not in the vocabulary: {', '.join(sorted(missing))}")
        index = {w: i for i, w in enumerate(self.words)}
        tokens = [[index.get(w, 1) for w in tokenize(s)] or [0] for s in sentences]
        ids = torch.zeros(len(tokens), max(map(len, tokens), default=1), dtype=torch.long)
        for row, sentence in enumerate(tokens):
            ids[row, : len(sentence)] = torch.tensor(sentence)
        return ids, torch.tensor([len(t) for t in tokens])


class SentenceEncoder(nn.Module):
    """Word ids -> a sentence embedding (B, out_dim): embedding, GRU, linear on its last state."""

    def __init__(self, max_words: int, dim: int, out_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(max_words, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, out_dim)
        # the vocabulary as bytes, row i word i (zeros: no word), saved with the weights
        self.register_buffer("words", torch.zeros(max_words, WORD_BYTES, dtype=torch.uint8))
        self._vocabulary: Vocabulary | None = None  # decoded from `words` when first read

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        if len(vocabulary) > len(self.words):
            raise ConfigError(
                f"the annotations have {len(vocabulary) - 2} words, more than max_words "
                f"{len(self.words)} - 2 (PAD and UNK); raise max_words"
            )
        rows = torch.zeros_like(self.words)
        for i, word in enumerate(vocabulary.words):
            data = word.encode()
            if len(data) > WORD_BYTES:
                raise ConfigError(f"word {word!r} is longer than {WORD_BYTES} bytes")
            rows[i, : len(data)] = torch.tensor(list(data), dtype=torch.uint8)
        self.words.copy_(rows)
        self._vocabulary = vocabulary

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            rows = [bytes(row).rstrip(b"\0").decode() for row in self.words.cpu().tolist()]
            self._vocabulary = Vocabulary(tuple(w for w in rows if w))
        return self._vocabulary

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._vocabulary = None  # a loaded vocabulary replaces the one decoded before

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return self.out(last[0])

    def embed(self, sentences: Sequence[str], strict: bool = False) -> torch.Tensor:
        """Sentences -> their embeddings (B, out_dim), on the encoder's device."""
        ids, lengths = self.vocabulary.encode(sentences, strict)
        return self(ids.to(self.words.device), lengths)
