"""Adding a backend is one module plus its registry entry: a scripted in-process backend (neither
llama.cpp nor HTTP), registered from this test module, is named in models.toml and then serves
as the study's generator, as the judge and in bench, through the same loaders as every backend."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_embedding_metrics import WordLengthEmbedder
from test_explain import ScriptedJudgeModel

from lite_align.commands import bench_model
from lite_align.data import ModelRef
from lite_align.errors import RegistryError
from lite_align.generation import Backend, GenerationRequest, GenerationResult, backend_names, registered_backend
from lite_align.loaders import open_judge
from lite_align.registry import load_registry
from lite_align.runner import RunOptions, execute, prepare


class ScriptedGenerator:
    """Replies from a script: a judge prompt gets a well-formed verdict (ScriptedJudgeModel's
    rules), any other prompt a few words drawn from (model, prompt, seed)."""

    def __init__(self, ref: ModelRef) -> None:
        self.name = ref.name
        self.calls = 0
        self.closed = False

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return "\n".join(m["content"] for m in messages)

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(range(len(text.split())))

    @property
    def timings(self) -> dict[str, float]:
        return {"calls": float(self.calls)}

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for req in requests:
            self.calls += 1
            for i, seed in enumerate(req.seeds):
                if "Answer with JSON" in req.prompt:
                    text = ScriptedJudgeModel._reply(req.prompt)
                else:
                    h = hashlib.sha256(f"{self.name}|{req.prompt}|{seed}".encode()).hexdigest()
                    n = min(req.params.max_tokens, 3 + int(h[0], 16) % 5)
                    text = " ".join(f"w{int(h[j : j + 2], 16) % 9}" for j in range(0, 2 * n, 2))
                yield GenerationResult(req.key, i, seed, text, len(text.split()), len(req.prompt.split()), "stop", 0.0)

    def close(self) -> None:
        self.closed = True


SCRIPTED = Backend(
    "scripted",
    open=lambda ref, n_ctx, tuner: ScriptedGenerator(ref),
    identity=lambda ref: f"scripted:{ref.name}",
    record=lambda ref: {"backend": "scripted"},
    locate=lambda spec: (f"scripted:{spec.name}", {}),
    description="replies from a script, in this process",
)

REGISTRY = """\
version = 1
default_pair = "scripted"

[models.scr-base]
role = "base"
family = "script"
backend = "scripted"

[models.scr-chat]
role = "chat"
family = "script"
backend = "scripted"

[pairs.scripted]
base = "scr-base"
chat = "scr-chat"
"""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "models.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    with registered_backend(SCRIPTED):
        yield path


def test_an_unregistered_backend_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    assert "scripted" not in backend_names()
    with pytest.raises(RegistryError, match='backend must be "llama.cpp" or "openai", not \'scripted\''):
        load_registry(path)


def test_a_registered_backend_runs_the_study(registry: Path, tmp_path: Path) -> None:
    opts = RunOptions(registry=str(registry), limit=2, samples=2, max_tokens=8, conditions="base,icl-static",
                      out=str(tmp_path / "run"))  # fmt: skip
    prep = prepare(opts)
    assert prep.plan.base.backend == "scripted" and prep.plan.chat.path == "scripted:scr-chat"
    assert prep.models["base"]["backend"] == "scripted"
    manifest, results = execute(prep, embedder=WordLengthEmbedder(tmp_path / "vectors"))
    assert manifest["status"] == "complete"
    assert set(results["diversity"]) == {"chat", "base", "icl-static"}
    assert results["diversity"]["base"]["n_responses"] == 4 and "icl-static" in results["recover"]


def test_a_registered_backend_judges(registry: Path) -> None:
    judge = open_judge("scr-chat", str(registry))
    try:
        assert judge.describe()["model"] == "scr-chat" and judge.model_sha256 == "scripted:scr-chat"
        verdicts = judge.quality([("Is tea healthy?", "Yes, tea has antioxidants that protect cells.")])
        assert verdicts[0].value is not None and verdicts[0].value.helpfulness == 4
    finally:
        judge.generator.close()


def test_a_registered_backend_is_benched(registry: Path) -> None:
    result: dict[str, Any] = bench_model("scr-base", str(registry), n_prompts=2, n_samples=3, max_tokens=4)
    assert result["model"] == "scr-base" and result["settings"]["backend"] == "scripted"
    for row in result["conditions"].values():
        assert row["samples"] == 6 and row["engine_tokens"] > 0
    assert "scripted backend" in result["notes"][0]
