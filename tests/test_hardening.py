"""What a hostile pass over the CLI found (issue 12), each through ``lite-align`` in a real
subprocess on the tiny generated GGUFs: the exit code, stderr's last line, no traceback, and stdout
empty (or one JSON document under --json). Signals are made to land deterministically: a
``sitecustomize`` hook (test-only, loaded through PYTHONPATH) holds the run inside its N-th sample
append until the test says go, so a run cannot finish before the test acts on it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hardening_util import CLI, ROOT, capped_cli, cli, one_line_error
from server_util import StubServer, completion, free_port
from sigint import ctrl_c_as_usual

INTERRUPTED = "interrupted: every finished sample is saved; rerun the same command to resume"


def tiny(base: Path, chat: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--base", str(base), "--chat", str(chat), "--out", str(out), *extra]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- a held run: the test decides when it goes on --------------------------------------------------

GATE_HOOK = """\
import os
if os.environ.get("LITE_ALIGN_TEST_GATE"):
    import time
    from pathlib import Path

    import lite_align.store as _store

    _gate = Path(os.environ["LITE_ALIGN_TEST_GATE"])
    _after = int(os.environ["LITE_ALIGN_TEST_GATE_AFTER"])
    _real_append = _store.RunStore.append
    _count = [0]

    def _append(self, path, sample):
        _real_append(self, path, sample)
        _count[0] += 1
        if _count[0] == _after:  # the sample is on disk; hold the run here until the test says go
            (_gate / "waiting").write_text(str(os.getpid()))
            while not (_gate / "go").exists():
                time.sleep(0.01)

    _store.RunStore.append = _append
"""


class HeldRun:
    """``lite-align run`` in a subprocess, held inside its ``after``-th sample append."""

    def __init__(self, args: list[str], gate: Path, after: int) -> None:
        hook = gate / "hook"
        hook.mkdir(parents=True)
        (hook / "sitecustomize.py").write_text(GATE_HOOK)
        self.gate = gate
        path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "LITE_ALIGN_TEST_GATE": str(gate)}
        env["LITE_ALIGN_TEST_GATE_AFTER"] = str(after)
        self.proc = subprocess.Popen(
            [*CLI, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_usual,
        )

    def wait_held(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.gate / "waiting").exists():
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise AssertionError(f"the run ended (exit {self.proc.returncode}) before it was held: {err[-2000:]}")
            assert time.monotonic() < deadline, "the run was not held in time"
            time.sleep(0.01)

    def release(self) -> None:
        (self.gate / "go").write_text("")

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out, err = self.proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def held_runs() -> Iterator[list[HeldRun]]:
    runs: list[HeldRun] = []
    yield runs
    for run in runs:
        run.kill()


# --- one tiny run, on a plain-text prompt set that tests the text rule (item 8) --------------------

PROMPT_FILE = (
    b"\xef\xbb\xbf# a comment line: not a prompt\n"
    b"Is tea better than coffee?\r\n"
    b"\n"
    b"\\# Is a hashtag a good name for a cat?\n"
    b"One\x0btwo\x0cthree\x1cfour: is this one prompt?\n"
)
PROMPTS = [
    "Is tea better than coffee?",
    "# Is a hashtag a good name for a cat?",
    "One\x0btwo\x0cthree\x1cfour: is this one prompt?",
]
SMALL = ("--samples", "2", "--max-tokens", "8")


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "mine.txt"
    path.write_bytes(PROMPT_FILE)
    return path


@pytest.fixture(scope="module")
def run_dir(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, prompt_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("hardening") / "tiny"
    res = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, out, "--prompts", str(prompt_file), *SMALL, "--json"))
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def damaged_copy(run_dir: Path, where: Path) -> Path:
    shutil.copytree(run_dir, where, ignore=shutil.ignore_patterns(".lock"))
    return where


def test_plain_text_prompts_follow_one_rule(run_dir: Path) -> None:
    """Item 8: a BOM is not text, only a newline ends a prompt, '#' starts a comment and '\\#' a prompt."""
    kept = [
        json.loads(line)["messages"][-1]["content"] for line in (run_dir / "prompts.jsonl").read_text().splitlines()
    ]
    assert kept == PROMPTS


# --- item 1: replay reads only the archive -----------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "class.zip"
    res = cli("pack", str(run_dir.resolve()), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def rewrite_bundle(src: Path, dst: Path, index_change: Any = None, entries: dict[str, bytes] | None = None) -> None:
    """A copy of a bundle with BUNDLE.json changed by ``index_change(index)`` and entries replaced,
    their sizes and sha256 fixed in BUNDLE.json as a careful forger would."""
    import hashlib

    with zipfile.ZipFile(src) as zin:
        files = {i.filename: zin.read(i) for i in zin.infolist()}
    files.update(entries or {})
    index = json.loads(files["BUNDLE.json"])
    for f in index["files"]:
        f["size"], f["sha256"] = len(files[f["path"]]), hashlib.sha256(files[f["path"]]).hexdigest()
    if index_change is not None:
        index_change(index)
    files["BUNDLE.json"] = json.dumps(index).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in files.items():
            zout.writestr(name, data)


@pytest.mark.parametrize("where", ["absolute", "relative", "name"])
def test_replay_refuses_paths_that_leave_the_archive(where: str, bundle: Path, run_dir: Path, tmp_path: Path) -> None:
    # another run on this machine, whose figures replay must never read
    outside = damaged_copy(run_dir, tmp_path / "elsewhere" / "other")
    forged = tmp_path / "forged.zip"

    def change(index: dict[str, Any]) -> None:
        run = index["runs"][0]
        if where == "absolute":
            run["path"] = str(outside)
        elif where == "relative":
            run["path"] = os.path.relpath(outside, tmp_path / "unpacked-somewhere")
        else:
            run["name"], run["path"] = "../../x", "runs/../../x"

    rewrite_bundle(bundle, forged, change)
    res = cli("replay", str(forged), "--lexical-only")
    line = one_line_error(res, "BUNDLE.json runs[0]")
    assert "reproduced" not in res.stdout + res.stderr, line


# --- item 2: prompts too long for the context, and --ctx -------------------------------------------


@pytest.fixture(scope="module")
def short_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny models with a 2048-token training context."""
    import tiny_gguf

    d = tmp_path_factory.mktemp("short-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiny_gguf, "N_CTX_TRAIN", 2048)
        return (
            tiny_gguf.write_tiny_llama(d / "base-2k.gguf", seed=0),
            tiny_gguf.write_tiny_llama(d / "chat-2k.gguf", chat=True, seed=1),
        )


def long_prompt_set(path: Path, first_chars: int) -> Path:
    words = "people think that some answer is not the query because many can "
    first = (words * (first_chars // len(words) + 1))[:first_chars].strip()
    path.write_text(f"{first}\nIs tea better than coffee?\nShould cities ban cars?\n", encoding="utf-8")
    return path


def test_a_prompt_longer_than_the_context_is_skipped_everywhere(
    short_models: tuple[Path, Path], tmp_path: Path
) -> None:
    base, chat = short_models
    prompts = long_prompt_set(tmp_path / "long.txt", 10_000)  # ~7,500 tokens: fits no 2048-token context
    res = cli(*tiny(base, chat, tmp_path / "run", "--prompts", str(prompts), *SMALL))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "preflight" not in res.stderr and "Traceback" not in res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    skipped = {(s["condition"], s["prompt_id"]) for s in manifest["skipped"]}
    assert {("chat", 0), ("base", 0), ("icl-static", 0), ("base-greedy", 0)} <= skipped
    assert all(pid == 0 for _, pid in skipped)
    assert "skipped too long for the model's context: chat prompt 0" in " ".join(res.stdout.split())
    base_records = records(tmp_path / "run" / "samples" / "base.jsonl")
    assert sorted({r["prompt_id"] for r in base_records}) == [1, 2]


def test_ctx_sets_the_context_and_prompts_beyond_it_are_skipped(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    prompts = long_prompt_set(tmp_path / "long.txt", 1_000)  # ~750 tokens: fits 8192, not 300
    out = tmp_path / "run"
    res = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, out, "--prompts", str(prompts), *SMALL, "--ctx", "300"))
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["ctx"] == 300 and manifest["identity"]["ctx"] == 300
    assert {("chat", 0), ("base", 0)} <= {(s["condition"], s["prompt_id"]) for s in manifest["skipped"]}
    assert {r["prompt_id"] for r in records(out / "samples" / "chat.jsonl")} == {1, 2}
    too_big = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--ctx", "9000", "--dry-run"))
    one_line_error(too_big, "--ctx 9000 is above the base model", "training context of 8192 tokens")
    no_room = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--ctx", "100", "--max-tokens", "100"))
    one_line_error(no_room, "--ctx 100 leaves no room for a prompt")


def test_a_failed_run_is_marked_failed_not_running(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    # at T=1e-4 sampling is greedy in all but name: the preflight sees four identical samples and stops
    out = tmp_path / "run"
    res = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "2", *SMALL, "--temperature", "0.0001"))
    line = one_line_error(res, "sampling preflight")
    assert "('preflight'" not in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "sampling preflight" in manifest["error"]


# --- item 3: one run per directory -------------------------------------------------------------------


def test_a_second_run_on_the_same_directory_is_refused_naming_the_first(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path, held_runs: list[HeldRun]
) -> None:
    out = tmp_path / "run"
    args = tiny(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "3", *SMALL, "--conditions", "base")
    first = HeldRun(args, tmp_path / "gate", after=1)
    held_runs.append(first)
    first.wait_held()
    second = cli(*args)
    one_line_error(second, f"in use by another lite-align run (pid {first.proc.pid})")
    assert "Plan" not in second.stderr  # refused before planning
    first.release()
    done = first.finish()
    assert done.returncode == 0, done.stderr[-2000:]
    for cond, n in (("chat", 2), ("base", 2)):
        keys = [(r["prompt_id"], r["sample_index"]) for r in records(out / "samples" / f"{cond}.jsonl")]
        assert sorted(keys) == [(p, j) for p in range(3) for j in range(n)], cond  # each sample once
    again = cli(*args)  # the lock went with the first process
    assert again.returncode == 0, again.stderr[-2000:]


# --- item 4: damaged run files -----------------------------------------------------------------------


def append_record(path: Path, **change: Any) -> int:
    """Append a copy of the file's first record with ``change``; returns its line number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rec = {**json.loads(lines[0]), **change}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    return len(lines) + 1


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"text": "another answer altogether"}, "prompt 0 sample 0 again, with other text than line 1"),
        ({"prompt_id": 99}, "prompt_id 99 is outside the run's prompt set (3 prompts"),
        ({"condition": "chat", "sample_index": 7}, "a sample of condition 'chat' in a file of 'base' samples"),
    ],
)
def test_damaged_samples_are_refused_with_file_and_line(
    change: dict[str, Any], needle: str, run_dir: Path, tmp_path: Path
) -> None:
    damaged = damaged_copy(run_dir, tmp_path / "damaged")
    line = append_record(damaged / "samples" / "base.jsonl", **change)
    for args in (["diversity", str(damaged), "--json"], ["report", str(damaged / "samples" / "base.jsonl")]):
        one_line_error(cli(*args), f"base.jsonl:{line}: ", needle)


def test_an_exact_duplicate_is_read_once_and_counted(run_dir: Path, tmp_path: Path) -> None:
    clean = cli("diversity", str(run_dir), "--json")
    assert clean.returncode == 0, clean.stderr[-2000:]
    damaged = damaged_copy(run_dir, tmp_path / "dup")
    append_record(damaged / "samples" / "base.jsonl", seconds=9.5)  # the same sample, written again
    res = cli("diversity", str(damaged), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    before = json.loads(clean.stdout)[f"{run_dir}[base]"]
    after = json.loads(res.stdout)[f"{damaged}[base]"]
    assert after.pop("n_duplicates") == 1 and "n_duplicates" not in before
    assert {**after, "label": None} == {**before, "label": None}


# --- item 5: sizes that cannot fit are refused before anything is allocated ------------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_huge_sample_count_is_refused_at_once(
    dry_run: bool, tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    args = tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--samples", "100000000", "--json")
    res, peak = capped_cli(*args, *(["--dry-run"] if dry_run else []))
    one_line_error(res, "--samples must be at most 10,000")
    assert peak < 512 << 20, f"peak memory {peak / 1e6:.0f} MB"
    assert not (tmp_path / "o").exists()
    res, _ = capped_cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--samples", "9999", "--limit", "200"))
    one_line_error(res, "one run holds at most 1,000,000")


# --- item 6: a server backend with nothing listening ----------------------------------------------


def served_registry(path: Path, base_url: str) -> Path:
    path.write_text(
        f'version = 1\n[models.srv]\nrole = "base"\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "m"\n',
        encoding="utf-8",
    )
    return path


def test_a_server_with_nothing_listening_fails_at_once(tiny_chat_gguf: Path, tmp_path: Path) -> None:
    registry = served_registry(tmp_path / "models.toml", f"http://127.0.0.1:{free_port()}/v1")
    args = ["run", "--registry", str(registry), "--base", "srv", "--chat", str(tiny_chat_gguf)]
    t0 = time.monotonic()
    res = cli(*args, "--out", str(tmp_path / "run"), "--limit", "1", *SMALL, "--conditions", "base")
    elapsed = time.monotonic() - t0
    one_line_error(res, "refused the connection (nothing listens there)", "start the server")
    assert elapsed < 30, f"took {elapsed:.0f} s"  # retrying for a minute before saying so was the bug


def test_the_server_backend_says_when_it_retries(capfd: pytest.CaptureFixture[str]) -> None:
    from lite_align.engine import GenerationRequest, SamplingParams
    from lite_align.generation.openai import OpenAIGenerator, RetryPolicy

    fast = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, timeout_s=10)
    with StubServer([(503, {"error": "loading"}), (200, completion(["fine"]))]) as stub:
        gen = OpenAIGenerator(stub.base_url, "m", retry=fast)
        gen.check_reachable()  # something answers there: no error
        request = GenerationRequest("k", "p", (1,), SamplingParams(temperature=1.0, max_tokens=4))
        assert [r.text for r in gen.generate([request])] == ["fine"]
    err = capfd.readouterr().err
    assert f"server {stub.base_url}: HTTP 503: loading; retrying in" in err and "(attempt 2 of at most 4)" in err


# --- item 7: tracebacks where one line was promised ------------------------------------------------


def test_tracebacks_become_one_line(tiny_base_gguf: Path, tiny_chat_gguf: Path, run_dir: Path, tmp_path: Path) -> None:
    one_line_error(cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--seed", "-1")), "--seed must be")
    nested = "[" * 100_000 + "\n"
    prompts = tmp_path / "nested.jsonl"
    prompts.write_text(nested)
    res = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--prompts", str(prompts), "--dry-run"))
    one_line_error(res, "nested.jsonl:1: invalid JSON (nested deeper than")
    one_line_error(cli("diversity", str(prompts)), "nested.jsonl:1: invalid JSON (nested deeper than")
    in_samples = damaged_copy(run_dir, tmp_path / "nested-samples")
    with (in_samples / "samples" / "base.jsonl").open("a") as fh:
        fh.write(nested)
    for args in (
        ["report", str(in_samples), "--format", "json"],
        ["pack", str(in_samples), "--out", str(tmp_path / "x.zip")],
    ):
        one_line_error(cli(*args), "base.jsonl:", "nested deeper than")
    in_manifest = damaged_copy(run_dir, tmp_path / "nested-manifest")
    (in_manifest / "manifest.json").write_text('{"a": ' * 100_000)
    for args in (["report", str(in_manifest)], ["pack", str(in_manifest), "--out", str(tmp_path / "y.zip")]):
        one_line_error(cli(*args), "manifest.json is not valid JSON")
    one_line_error(
        cli("compare", str(run_dir), str(run_dir / "samples" / "base.jsonl")), "not a lite_align run directory"
    )


# --- items 5, 7, 9: option values and registry entries ---------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--samples", "10001"], "--samples must be at most 10,000"),
        (["--max-tokens", "131073"], "--max-tokens must be at most 131,072"),
        (["--max-tokens", "8192"], "--max-tokens 8192 leaves no room for a prompt in the base model"),
        (["--ctx", "15"], "--ctx must be at least 16"),
        (["--k", "65"], "--k must be at most 64"),
        (["--seed", "-1"], "--seed must be at least 0"),
        (["--threads", "257"], "--threads must be at most 256"),
        (["--gpu-layers", "-1"], "--gpu-layers must be at least 0"),
        (["--gpu-layers", "10001"], "--gpu-layers must be at most 10,000"),
        (["--temperature", "-0.5"], "--temperature must be a finite number >= 0, got -0.5"),
    ],
)
def test_every_option_limit_is_stated_in_one_line(
    extra: list[str], needle: str, tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    one_line_error(cli(*tiny(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", *extra, "--dry-run", "--json")), needle)
    assert not (tmp_path / "o").exists()


def test_bad_values_are_named_as_the_user_wrote_them(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    never = tmp_path / "never-made"
    for extra, needle in (
        (["--temperature", "nan"], "--temperature must be a finite number >= 0, got nan"),
        (["--temperature", "inf"], "--temperature must be a finite number >= 0, got inf"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--conditions", ","], "--conditions ',' names no condition"),
    ):
        one_line_error(cli(*tiny(tiny_base_gguf, tiny_chat_gguf, never, *extra)), needle)
    assert not never.exists()
    zero = served_registry(tmp_path / "zero.toml", "http://127.0.0.1:1/v1")
    zero.write_text(zero.read_text() + "concurrency = 0\n")
    one_line_error(cli("models", "--registry", str(zero)), "zero.toml:2: models.srv.concurrency must be between 1 and")
    folder = tmp_path / "a-model-folder"
    folder.mkdir()
    reg = tmp_path / "dir.toml"
    reg.write_text(f'version = 1\n[models.dirmodel]\nrole = "base"\npath = "{folder}"\n')
    args = ["run", "--registry", str(reg), "--base", "dirmodel", "--chat", str(tiny_chat_gguf), "--dry-run"]
    one_line_error(cli(*args), f"path {folder} is a folder")


# --- item 10: SIGTERM as Ctrl-C ----------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_keeps_its_samples_and_says_so(
    sig: int, code: int, tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path, held_runs: list[HeldRun]
) -> None:
    out = tmp_path / "run"
    args = tiny(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "3", *SMALL, "--conditions", "base")
    run = HeldRun(args, tmp_path / "gate", after=3)
    held_runs.append(run)
    run.wait_held()  # three samples are on disk and the run cannot finish: the signal lands mid-run
    run.proc.send_signal(sig)
    res = run.finish()
    assert res.returncode == code, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in res.stderr
    assert res.stdout == ""
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    before = {f.name: f.read_bytes() for f in (out / "samples").glob("*.jsonl")}
    assert sum(len(b.splitlines()) for b in before.values()) == 3  # every finished sample, flushed
    assert all(b.endswith(b"\n") for b in before.values())
    again = cli(*args)  # resumes: only what is missing, earlier lines untouched
    assert again.returncode == 0, again.stderr[-2000:]
    for name, old in before.items():
        assert (out / "samples" / name).read_bytes().startswith(old), name
    for cond, n in (("chat", 2), ("base", 2)):
        keys = sorted((r["prompt_id"], r["sample_index"]) for r in records(out / "samples" / f"{cond}.jsonl"))
        assert keys == [(p, j) for p in range(3) for j in range(n)], cond
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


# --- item 11: bundles, --out, conflicting options ------------------------------------------------


def strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, str):
        yield obj


def test_bundle_index_names_no_folder_of_the_packer(bundle: Path, run_dir: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        index = json.loads(zf.read("BUNDLE.json"))
    assert index["runs"] == [{"name": "tiny", "path": "runs/tiny", "source": "tiny"}]
    assert not [s for s in strings(index) if s.startswith("/") or str(run_dir.parent) in s]


def test_an_unwritable_out_fails_before_the_plan(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = cli(*tiny(tiny_base_gguf, tiny_chat_gguf, blocker / "run", "--limit", "1"))
    line = one_line_error(res, "cannot create run directory")
    assert res.stderr.strip().splitlines() == [line]  # nothing before it: no plan


def test_pack_refuses_a_damaged_run_naming_the_line(run_dir: Path, tmp_path: Path) -> None:
    damaged = damaged_copy(run_dir, tmp_path / "damaged")
    samples = damaged / "samples" / "icl-knn.jsonl"
    lines = samples.read_text().splitlines(True)
    samples.write_text(lines[0] + '{"prompt_id": 1, "text": \n' + "".join(lines[1:]))
    one_line_error(cli("pack", str(damaged), "--out", str(tmp_path / "x.zip")), "icl-knn.jsonl:2: invalid JSON")
    assert not (tmp_path / "x.zip").exists()


def test_replay_errors_name_the_bundle_not_a_removed_folder(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        lines = zf.read("runs/tiny/samples/base.jsonl").decode().splitlines(True)
    forged = tmp_path / "forged.zip"
    rewrite_bundle(bundle, forged, entries={"runs/tiny/samples/base.jsonl": (lines[0] + "{oops\n").encode()})
    line = one_line_error(cli("replay", str(forged), "--lexical-only"))
    assert f"{forged}: runs/tiny/samples/base.jsonl:2: invalid JSON" in line
    assert "lite-align-replay-" not in line


@pytest.mark.parametrize("command", ["report", "replay"])
def test_format_and_json_that_disagree_are_refused(command: str, run_dir: Path, bundle: Path) -> None:
    target = [str(run_dir)] if command == "report" else [str(bundle), "--lexical-only"]
    for fmt, needle in (("pdf", "--format: unknown format 'pdf'"), ("html", "--json and --format html ask for")):
        res = cli(command, *target, "--format", fmt, "--json")
        one_line_error(res, needle)
        assert res.stdout == ""
    ok = cli(command, *target, "--format", "json", "--json")
    assert ok.returncode == 0, ok.stderr[-2000:]
    json.loads(ok.stdout)


def test_a_lexical_replay_leaves_out_the_quality_filters_it_cannot_recompute(bundle: Path, tmp_path: Path) -> None:
    """Found on the way: the off-topic filter compares embeddings, so --lexical-only cannot
    recompute the quality filters; a real bundle whose base model had off-topic answers failed."""
    with zipfile.ZipFile(bundle) as zf:
        results = json.loads(zf.read("runs/tiny/results.json"))
    results["explain"]["quality"]["filters"]["base"]["flagged"]["off_topic"] = 0.25  # as a real run has
    forged = tmp_path / "off-topic.zip"
    rewrite_bundle(bundle, forged, entries={"runs/tiny/results.json": json.dumps(results).encode()})
    lexical = cli("replay", str(forged), "--lexical-only", "--json")
    assert lexical.returncode == 0, lexical.stderr[-2000:]
    assert json.loads(lexical.stdout)["reproduced"]
    full = cli("replay", str(forged), "--json")  # with the embedder the figure is recomputed, and differs
    line = one_line_error(full, "explain.quality.filters.base.flagged.off_topic", code=1)
    assert "1 recomputed figure(s) differ" in line
