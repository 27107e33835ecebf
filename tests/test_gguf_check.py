"""GGUF header checks on the tiny models and on damaged copies of them."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import unavailable
from tiny_gguf import N_CTX_TRAIN, tiny_vocab

from lite_align.errors import ModelFileError
from lite_align.gguf_check import FILE_TYPES, GGML_BLOCKS, gguf_vocab_size, inspect_gguf, sha256_file


def test_a_good_file_is_described(tiny_base_gguf: Path, tiny_chat_gguf: Path) -> None:
    info = inspect_gguf(tiny_base_gguf)
    assert info.architecture == "llama"
    assert info.name == "tiny-llama-base"
    assert info.context_length == N_CTX_TRAIN
    assert info.n_tensors == 3 + 9 * 2  # embeddings, output norm, output + 9 per layer
    assert info.file_type == "F32"
    assert info.version == 3
    assert info.size == tiny_base_gguf.stat().st_size
    assert info.data_offset % 32 == 0 and 0 < info.data_offset < info.size
    assert not info.has_chat_template
    assert inspect_gguf(tiny_chat_gguf).has_chat_template


def test_a_truncated_file_says_how_many_bytes_are_missing(tiny_base_gguf: Path, tmp_path: Path) -> None:
    data = tiny_base_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:-4096])
    with pytest.raises(ModelFileError) as err:
        inspect_gguf(cut)
    message = str(err.value)
    assert f"{cut} is truncated: {len(data)} bytes expected" in message
    assert f"{len(data) - 4096} present" in message and "re-download" in message
    assert "\n" not in message


def test_a_file_cut_inside_the_metadata_is_truncated(tiny_base_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.gguf"
    cut.write_bytes(tiny_base_gguf.read_bytes()[:300])
    with pytest.raises(ModelFileError, match="is truncated: its metadata"):
        inspect_gguf(cut)


def test_a_text_file_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("<html>404 Not Found</html>" * 4)
    with pytest.raises(ModelFileError, match=r"model.gguf is not a GGUF file \(it starts with b'<htm'"):
        inspect_gguf(path)


def test_random_bytes_are_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "noise.gguf"
    path.write_bytes(os.urandom(4096).replace(b"GGUF", b"XXXX"))
    with pytest.raises(ModelFileError, match="is not a GGUF file"):
        inspect_gguf(path)


def test_random_bytes_after_a_valid_magic_are_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + os.urandom(100_000))
    with pytest.raises(ModelFileError, match="corrupted|truncated"):
        inspect_gguf(path)


def test_unsupported_version_and_missing_and_empty_files(tmp_path: Path) -> None:
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(ModelFileError, match="version 1; only versions 2 and 3"):
        inspect_gguf(old)
    with pytest.raises(ModelFileError, match="does not exist"):
        inspect_gguf(tmp_path / "nope.gguf")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"not a GGUF file \(only 0 bytes\)"):
        inspect_gguf(empty)
    with pytest.raises(ModelFileError, match="not a file"):
        inspect_gguf(tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_every_truncation_point_is_caught(tiny_chat_gguf: Path, tmp_path: Path, cut: int) -> None:
    data = tiny_chat_gguf.read_bytes()
    path = tmp_path / "t.gguf"
    path.write_bytes(data[: cut % len(data)])
    with pytest.raises(ModelFileError):
        inspect_gguf(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0, max_value=400), value=st.integers(min_value=0, max_value=255))
def test_a_damaged_header_raises_only_model_file_errors(
    tiny_base_gguf: Path, tmp_path: Path, pos: int, value: int
) -> None:
    data = bytearray(tiny_base_gguf.read_bytes())
    data[pos] = value
    path = tmp_path / "d.gguf"
    path.write_bytes(bytes(data))
    try:
        inspect_gguf(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


def test_block_sizes_and_file_types_match_the_gguf_package() -> None:
    gguf = pytest.importorskip("gguf")
    for qtype, sizes in gguf.GGML_QUANT_SIZES.items():
        assert GGML_BLOCKS[int(qtype)] == sizes, qtype.name
    for ftype in gguf.LlamaFileType:
        if int(ftype) in FILE_TYPES:
            assert ftype.name.endswith(FILE_TYPES[int(ftype)]), ftype.name


def test_sha256_is_cached_by_path_size_and_mtime(tiny_base_gguf: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_base_gguf.read_bytes())
    cache = tmp_path / "cache" / "sha.json"
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    assert sha256_file(model, cache=cache, chunk=4096) == expected
    assert expected in cache.read_text()
    # a cache hit does not read the file: plant a wrong value and see it come back
    cache.write_text(cache.read_text().replace(expected, "f" * 64))
    assert sha256_file(model, cache=cache) == "f" * 64
    # a changed file (size and mtime) is hashed again
    model.write_bytes(model.read_bytes() + b"x")
    assert sha256_file(model, cache=cache) == hashlib.sha256(model.read_bytes()).hexdigest()


def test_sha256_works_without_a_writable_cache(tiny_base_gguf: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    expected = hashlib.sha256(tiny_base_gguf.read_bytes()).hexdigest()
    assert sha256_file(tiny_base_gguf, cache=blocker / "sha.json") == expected


# -------------------------------------------------------------------------------------------------
# Vocabulary size (EAD's V, issue 14): the token list's length, from the header alone


def _llama_cpp_n_vocab(path: Path) -> int:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return int(llm.n_vocab())
    finally:
        llm.close()


def test_vocab_size_of_the_tiny_models_is_their_token_list(tiny_base_gguf: Path, tiny_chat_gguf: Path) -> None:
    base, chat = len(tiny_vocab(chat=False)[0]), len(tiny_vocab(chat=True)[0])
    assert chat == base + 3  # the chat model's three control tokens
    assert gguf_vocab_size(tiny_base_gguf) == inspect_gguf(tiny_base_gguf).vocab_size == base
    assert gguf_vocab_size(tiny_chat_gguf) == chat
    assert _llama_cpp_n_vocab(tiny_base_gguf) == base  # what llama.cpp itself counts
    assert _llama_cpp_n_vocab(tiny_chat_gguf) == chat


def test_vocab_size_is_none_without_a_token_list(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "no-tokens.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("general.tags", ["a", "b", "c"])  # another array of strings is not the token list
    writer.add_tensor("w", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = inspect_gguf(path)
    assert info.architecture == "llama" and info.vocab_size is None
    assert gguf_vocab_size(path) is None


def test_vocab_size_of_a_damaged_file_is_a_one_line_error(tiny_base_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.gguf"
    cut.write_bytes(tiny_base_gguf.read_bytes()[:2000])  # inside the token list
    with pytest.raises(ModelFileError, match="is truncated: its metadata value 'tokenizer.ggml.tokens'"):
        gguf_vocab_size(cut)


@pytest.mark.real_models
@pytest.mark.parametrize(("name", "expected"), [("gemma-3-270m", 262_144), ("smollm2-135m-instruct", 49_152)])
def test_vocab_size_of_the_embedded_models(name: str, expected: int) -> None:
    from lite_align.registry import load_registry, locate

    path = locate(load_registry().model(name))
    if path is None:
        unavailable(f"the embedded model {name} is not installed", "run ./install.sh")
    assert gguf_vocab_size(path) == expected == _llama_cpp_n_vocab(path)
