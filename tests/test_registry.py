"""models.toml parsing, validation messages (with line numbers) and model resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_align.errors import ModelNotFoundError, RegistryError
from lite_align.registry import ModelSpec, load_registry, locate, resolve, resolve_model_arg

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
version = 1
default_pair = "p"

[models.b]
role = "base"
path = "{base}"
family = "x"

[models.c]
role = "chat"
file = "chat.gguf"
chat_template = true

[pairs.p]
base = "b"
chat = "c"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "models.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_project_registry_is_valid_and_lists_the_embedded_pair() -> None:
    reg = load_registry(ROOT / "models.toml")
    pair = reg.pair("embedded")
    assert reg.model(pair.base).role == "base"
    assert reg.model(pair.chat).role == "chat"
    assert reg.model(pair.base).family != reg.model(pair.chat).family  # the note must say so
    assert "different families" in pair.note.lower()
    for name in ("gemma-3-270m", "smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b"):
        assert name in reg.pairs, name
    assert all(m.license and (m.url or m.package or m.repo) for m in reg.models.values())
    for name in ("gemma-3-270m", "smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b"):  # pullable from the hub
        for member in (reg.pairs[name].base, reg.pairs[name].chat):
            assert reg.models[member].repo or reg.models[member].package, member
    assert reg.default_embedder in reg.embedders


def test_good_registry_parses(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path, GOOD.format(base=tmp_path / "b.gguf")))
    assert reg.model("b").family == "x"
    assert reg.model("c").chat_template is True
    assert reg.pair("p").chat == "c"


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    text = GOOD.format(base="x.gguf").replace('family = "x"', 'family = "x')
    with pytest.raises(RegistryError) as ei:
        load_registry(write(tmp_path, text))
    msg = str(ei.value)
    assert "line 8" in msg and "models.toml" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (('role = "base"', 'role = "teacher"'), "role must be"),
        (('family = "x"', 'colour = "x"'), "unknown key(s) colour"),
        (('chat = "c"\n', 'chat = "nope"\n'), "unknown model 'nope'"),
        (('base = "b"', 'base = "c"'), "registered with role 'chat'"),
        (("chat_template = true", 'chat_template = "yes"'), "must be a bool"),
    ],
)
def test_invalid_entries_give_one_line(tmp_path: Path, change: tuple[str, str], needle: str) -> None:
    text = GOOD.format(base="x.gguf").replace(*change)
    with pytest.raises(RegistryError) as ei:
        load_registry(write(tmp_path, text))
    assert needle in str(ei.value)
    assert "models.toml:" in str(ei.value)


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "nope.toml")


def test_non_utf8_registry(tmp_path: Path) -> None:
    p = tmp_path / "models.toml"
    p.write_bytes(b"version = 1\n# caf\xe9\n")
    with pytest.raises(RegistryError, match=r"models.toml:2: not UTF-8"):
        load_registry(p)


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path, GOOD.format(base="x.gguf")))
    with pytest.raises(ModelNotFoundError) as ei:
        reg.model("gpt-5")
    assert "unknown model 'gpt-5'" in str(ei.value) and "b, c" in str(ei.value)


def test_missing_file_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITE_ALIGN_MODELS_DIR", str(tmp_path / "mdir"))
    spec = ModelSpec(name="c", role="chat", file="chat.gguf", url="https://example.org/chat")
    assert locate(spec) is None
    with pytest.raises(ModelNotFoundError) as ei:
        resolve(spec)
    assert "chat.gguf" in str(ei.value) and str(tmp_path / "mdir") in str(ei.value)
    (tmp_path / "mdir").mkdir()
    (tmp_path / "mdir" / "chat.gguf").write_bytes(b"GGUF")
    assert resolve(spec) == tmp_path / "mdir" / "chat.gguf"


def test_model_arg_accepts_a_gguf_path(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path, GOOD.format(base="x.gguf")))
    f = tmp_path / "my-model.gguf"
    f.write_bytes(b"GGUF")
    spec, path = resolve_model_arg(reg, str(f), "base")
    assert spec.name == "my-model" and path == f.resolve() and spec.role == "base"
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model_arg(reg, str(tmp_path / "absent.gguf"), "base")


def test_package_file_is_found_without_importing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fakepkg_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec(name="m", role="chat", package="fakepkg_models", file="m.gguf")
    assert locate(spec) == pkg / "m.gguf"
