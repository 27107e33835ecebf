"""`lite-align release fetch` / `release path` / `--release DATASET`, end to end against a loopback
HTTP server that serves an archive built here in the layout of the paper's release (GitHub's
tarball of the repository: one top folder, then data/<dataset>/...). Never the internet.

The server honours Range requests and can drop the connection partway, ignore ranges, or serve
damaged bytes; every CLI call runs in a fresh process with its own cache folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_cli import ROOT, assert_one_line_error

from lite_align.release import RELEASE_COMMIT, kept_path

TOP = f"investigating-alignment-{RELEASE_COMMIT}"
FAILED = {
    "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096.",
    "error_type": "validation",
}


def jsonl(rows: list[object]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def server_line(*texts: str | None) -> dict[str, object]:
    return {"prompt": "q", "outputs": [FAILED if t is None else {"generated_text": t} for t in texts]}


def judge_line(stance: str) -> dict[str, object]:
    return {"ok": True, "outputs": [{"message": {"role": "assistant", "content": json.dumps({"stance": stance})}}]}


QUESTIONS = ["Are cats better than dogs?", "Is tea healthy?", "Should kids learn Latin?"]
# archive path (under the top folder) -> bytes; kept ones are the release's data files
KEPT = {
    "data/ConflictingQA/instances/data.jsonl": jsonl(
        [{"messages": [{"role": "user", "content": q}]} for q in QUESTIONS]
    ),
    "data/ConflictingQA/outputs/gpt/samples.jsonl": jsonl(
        [server_line("cats purr", "cats purr softly"), server_line("tea helps", "tea"), server_line("Latin", "Latin")]
    ),
    "data/ConflictingQA/outputs/gpt/args.json": b'{"params": {"temperature": 0.5}}',
    "data/ConflictingQA/outputs/base/samples.jsonl": jsonl(
        [server_line("dogs bark", "cats"), server_line("green tea", "coffee"), server_line("no", "Greek")]
    ),
    "data/ConflictingQA/outputs-temp0/gpt/samples.jsonl": jsonl(
        [server_line("cats purr"), server_line("tea helps"), server_line("Latin")]
    ),
    "data/ConflictingQA/outputs-temp0/base/samples.jsonl": jsonl(
        [server_line("dogs bark"), server_line("green tea"), server_line("Latin")]
    ),
    "data/ConflictingQA/eval-stance/outputs/base/samples.jsonl": jsonl(
        [judge_line(s) for s in ("yes", "no", "yes", "yes", "both", "no")]
    ),
    "data/ConflictingQA/eval-stance/outputs/base/args.json": b"{}",
    "data/LIMA-OE/instances/data.jsonl": jsonl([{"messages": [{"role": "user", "content": q}]} for q in QUESTIONS]),
    "data/LIMA-OE/outputs/icl-5nn/samples.jsonl": jsonl(
        [server_line(None, None), server_line("red apple", "green apple"), server_line(None, "x")]
    ),
}
LEFT_OUT = {
    "README.md": b"# investigating alignment\n",
    "lib/metrics.py": b"print('not ours')\n",
    "data/ConflictingQA/instances/embeddings.npz": random.Random(0).randbytes(3_000_000),  # big, incompressible
    "data/ConflictingQA/bertscore/outputs/gpt/samples.jsonl": b"{}\n",
    "data/ConflictingQA/eval-stance/instances/base/data.jsonl": b"{}\n",
    "data/ConflictingQA/eval-quality/outputs/base/samples.jsonl": b"{}\n",
    "data/ConflictingQA/outputs/gpt/embeddings-response_similar.npz": b"\x00" * 100,
}


def build_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted({**KEPT, **LEFT_OUT}.items()):
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{TOP}/data/ConflictingQA/outputs/linked/samples.jsonl")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"  # never followed, never kept
        tar.addfile(link)
    return buf.getvalue()


ARCHIVE = build_archive()


@dataclass
class Behaviour:
    drop_after: int | None = None  # close the connection after this many body bytes of a response
    drops_left: int = 0  # how many responses are cut short (then the server behaves)
    ignore_range: bool = False
    body: bytes = ARCHIVE
    ranges: list[str | None] = field(default_factory=list)  # the Range header of every request


class ReleaseServer:
    """GET /tar.gz/<commit> on 127.0.0.1, with Range support and scripted failures."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                b = outer.behaviour
                if self.path != f"/tar.gz/{RELEASE_COMMIT}":
                    self.send_error(404)
                    return
                asked = self.headers.get("Range")
                b.ranges.append(asked)
                start = 0
                if asked and not b.ignore_range:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(b.body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(b.body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(b.body) - 1}/{len(b.body)}")
                else:
                    self.send_response(200)
                body = b.body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/x-gzip")
                self.end_headers()
                if b.drop_after is not None and b.drops_left > 0:
                    b.drops_left -= 1
                    self.wfile.write(body[: b.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/tar.gz"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[ReleaseServer]:
    s = ReleaseServer()
    yield s
    s.close()


def cli(*args: str, cache: Path, url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process whose cache is ``cache`` and whose release comes from ``url`` (and
    never from a LITE_ALIGN_PAPER_RELEASE the test run itself was given)."""
    full = {k: v for k, v in os.environ.items() if k != "LITE_ALIGN_PAPER_RELEASE"}
    full.update({"COLUMNS": "200", "LITE_ALIGN_CACHE": str(cache), "LITE_ALIGN_RELEASE_URL": url, **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "lite_align.cli", *args], cwd=ROOT, capture_output=True, text=True, env=full, timeout=300
    )


def expected_files() -> dict[str, bytes]:
    out = {}
    for name, data in KEPT.items():
        rel = kept_path(f"{TOP}/{name}")
        assert rel is not None, name
        out[rel] = data
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "release.json"
    }


def fetch(server: ReleaseServer, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("release", "fetch", "--json", *extra, cache=cache, url=server.base_url)


# --------------------------------------------------------------------------------------------------


def test_kept_paths_follow_the_releases_layout() -> None:
    assert set(expected_files()) == {
        "ConflictingQA/instances/data.jsonl",
        "ConflictingQA/outputs/gpt/samples.jsonl",
        "ConflictingQA/outputs/gpt/args.json",
        "ConflictingQA/outputs/base/samples.jsonl",
        "ConflictingQA/outputs-temp0/gpt/samples.jsonl",
        "ConflictingQA/outputs-temp0/base/samples.jsonl",
        "ConflictingQA/eval-stance/base/samples.jsonl",
        "ConflictingQA/eval-stance/base/args.json",
        "LIMA-OE/instances/data.jsonl",
        "LIMA-OE/outputs/icl-5nn/samples.jsonl",
    }
    for name in LEFT_OUT:
        assert kept_path(f"{TOP}/{name}") is None, name


def test_fetch_keeps_the_data_files_with_their_sha256_and_commands_find_them(
    server: ReleaseServer, tmp_path: Path
) -> None:
    res = fetch(server, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    root = tmp_path / "paper-release"  # the cache's paper-release folder
    assert doc["path"] == str(root) and doc["commit"] == RELEASE_COMMIT
    assert doc["datasets"] == ["ConflictingQA", "LIMA-OE"] and doc["files"] == len(KEPT)
    assert doc["downloaded"] == len(ARCHIVE) and doc["resumed_at"] == 0 and not doc["already_here"]
    assert tree(root) == expected_files()  # only the kept files, byte for byte; the symlink is not there
    manifest = json.loads((root / "release.json").read_text())
    assert manifest["commit"] == RELEASE_COMMIT and manifest["url"] == f"{server.base_url}/{RELEASE_COMMIT}"
    for rel, data in expected_files().items():
        assert manifest["files"][rel]["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["files"][rel]["size"] == len(data)
    assert not (root / ".partial").exists()  # the archive is gone once its files are kept

    where = cli("release", "path", cache=tmp_path, url=server.base_url)
    assert where.returncode == 0 and where.stdout == f"{root}\n"

    div = cli("diversity", "--release", "ConflictingQA", "--json", cache=tmp_path, url=server.base_url)
    assert div.returncode == 0, div.stderr[-2000:]
    table = json.loads(div.stdout)
    assert list(table) == [str(root / "ConflictingQA/outputs/base"), str(root / "ConflictingQA/outputs/gpt")]
    # gpt: J({cats, purr}, {cats, purr, softly}) = 2/3, J({tea, helps}, {tea}) = 1/2, J({Latin}, {Latin}) = 1
    assert table[str(root / "ConflictingQA/outputs/gpt")]["jaccard_within"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)

    lima = cli("diversity", "--release", "LIMA-OE", "--json", cache=tmp_path, url=server.base_url)
    row = json.loads(lima.stdout)[str(root / "LIMA-OE/outputs/icl-5nn")]
    assert (row["n_prompts"], row["n_failed"], row["failed_reasons"]) == (1, 2, {"validation error": 2})
    assert row["jaccard_within"] == pytest.approx(1 / 3)  # {red, apple} vs {green, apple}

    rec = cli(
        "recover", "--release", "ConflictingQA", "--reference", "gpt", "base", "--lexical-only", "--json",
        cache=tmp_path, url=server.base_url,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr[-2000:]
    assert json.loads(rec.stdout)[str(root / "ConflictingQA/outputs/base")]["jaccard"]["n_prompts"] == 3

    greedy = cli(
        "recover", "--release", "ConflictingQA/outputs-temp0", "--reference", "gpt", "--baseline", "outputs/gpt",
        "--lexical-only", "--json", cache=tmp_path, url=server.base_url,
    )  # fmt: skip
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    row = json.loads(greedy.stdout)[str(root / "ConflictingQA/outputs-temp0/base")]["jaccard"]
    assert row["baseline"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # the sampled gpt's, s0 against s1
    assert row["cross"] == pytest.approx((0 + 1 / 3 + 1) / 3)  # greedy base against greedy gpt

    stance = cli(
        "stance",
        "--release",
        "ConflictingQA",
        "--samples-per-prompt",
        "2",
        "--json",
        cache=tmp_path,
        url=server.base_url,
    )
    assert stance.returncode == 0, stance.stderr[-2000:]
    s = json.loads(stance.stdout)[str(root / "ConflictingQA/eval-stance/base")]
    assert s["prompts_with_yes_and_no"] == pytest.approx(1 / 3) and s["both"] == pytest.approx(1 / 6)

    report = cli(
        "report", "--release", "ConflictingQA", "--reference", "gpt", "--format", "markdown",
        cache=tmp_path, url=server.base_url,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    assert "ConflictingQA/instances/data.jsonl" in report.stdout  # the prompts found beside the outputs

    explain = cli(
        "explain", "--release", "ConflictingQA", "--base", "base", "--aligned", "gpt", "--json",
        cache=tmp_path, url=server.base_url,
    )  # fmt: skip
    assert explain.returncode == 0, explain.stderr[-2000:]
    assert json.loads(explain.stdout)["n_prompts"] == 3

    bundle = tmp_path / "class.zip"
    pack = cli(
        "pack", "--release", "ConflictingQA", "--reference", "gpt", "--out", str(bundle), "--json",
        cache=tmp_path, url=server.base_url,
    )  # fmt: skip
    assert pack.returncode == 0, pack.stderr[-2000:]
    assert json.loads(pack.stdout)["released"] == ["outputs"]

    again = fetch(server, tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["already_here"] is True
    assert len(server.behaviour.ranges) == 1  # checked against the manifest, not downloaded again


def test_a_connection_dropped_midway_is_resumed_with_a_range_request(server: ReleaseServer, tmp_path: Path) -> None:
    server.behaviour.drop_after, server.behaviour.drops_left = 1_000_000, 1
    res = fetch(server, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert server.behaviour.ranges == [None, "bytes=1000000-"]
    doc = json.loads(res.stdout)
    assert doc["resumed_at"] == 1_000_000 and doc["downloaded"] == len(ARCHIVE)
    assert "resuming at 1.0 MB" in res.stderr
    assert tree(tmp_path / "paper-release") == expected_files()


def test_a_download_that_keeps_breaking_stops_in_one_line_and_the_next_fetch_resumes(
    server: ReleaseServer, tmp_path: Path
) -> None:
    server.behaviour.drop_after, server.behaviour.drops_left = 400_000, 99
    res = cli("release", "fetch", cache=tmp_path, url=server.base_url)
    assert_one_line_error(res, "stopped at 1.6 MB", "the connection closed before the end", "rerun")
    part = tmp_path / "paper-release" / ".partial" / f"{RELEASE_COMMIT}.tar.gz.part"
    assert part.read_bytes() == ARCHIVE[:1_600_000]  # four attempts, 400 kB each, all kept
    server.behaviour.drops_left = 0
    again = fetch(server, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert server.behaviour.ranges[-1] == "bytes=1600000-" and json.loads(again.stdout)["resumed_at"] == 1_600_000
    assert tree(tmp_path / "paper-release") == expected_files()


def test_a_server_that_ignores_the_range_gets_a_fresh_download(server: ReleaseServer, tmp_path: Path) -> None:
    server.behaviour.drop_after, server.behaviour.drops_left, server.behaviour.ignore_range = 700_000, 1, True
    res = fetch(server, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["resumed_at"] == 0  # the second response was the whole archive again
    assert tree(tmp_path / "paper-release") == expected_files()


def test_a_changed_file_is_caught_by_the_manifest_and_fetch_repairs_it(server: ReleaseServer, tmp_path: Path) -> None:
    assert fetch(server, tmp_path).returncode == 0
    root = tmp_path / "paper-release"
    damaged = root / "ConflictingQA/outputs/gpt/samples.jsonl"
    damaged.write_bytes(damaged.read_bytes().replace(b"purr", b"purl"))
    url = server.base_url
    assert_one_line_error(
        cli("diversity", "--release", "ConflictingQA", cache=tmp_path, url=url),
        str(damaged),
        "differs from the release",
        "lite-align release fetch",
    )
    assert_one_line_error(cli("release", "path", cache=tmp_path, url=url), str(damaged), "differs from the release")
    damaged.write_bytes(damaged.read_bytes().replace(b"purl", b"purr"))  # put back: the next check looks further
    (root / "LIMA-OE/outputs/icl-5nn/samples.jsonl").unlink()
    assert_one_line_error(cli("release", "path", cache=tmp_path, url=url), "icl-5nn", "missing from the release")
    repaired = fetch(server, tmp_path)
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert "damaged" in repaired.stderr and json.loads(repaired.stdout)["downloaded"] == len(ARCHIVE)
    assert tree(root) == expected_files()
    assert cli("diversity", "--release", "ConflictingQA", cache=tmp_path, url=url).returncode == 0


def test_a_damaged_archive_is_refused_and_downloaded_afresh_next_time(server: ReleaseServer, tmp_path: Path) -> None:
    damaged = bytearray(ARCHIVE)
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    server.behaviour.body = bytes(damaged)
    res = cli("release", "fetch", cache=tmp_path, url=server.base_url)
    assert_one_line_error(res, "the downloaded archive is damaged", "download it again")
    assert not (tmp_path / "paper-release" / "release.json").exists()
    assert not (tmp_path / "paper-release" / ".partial" / f"{RELEASE_COMMIT}.tar.gz").exists()
    server.behaviour.body = ARCHIVE
    ok = fetch(server, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert server.behaviour.ranges[-1] is None  # a new download from the start
    assert tree(tmp_path / "paper-release") == expected_files()


def test_a_file_that_cannot_be_written_keeps_the_downloaded_archive(server: ReleaseServer, tmp_path: Path) -> None:
    partial = tmp_path / "paper-release" / ".partial"
    partial.mkdir(parents=True)
    (partial / "tree").write_text("in the way")  # the kept files cannot be written under it
    res = cli("release", "fetch", cache=tmp_path, url=server.base_url)
    assert_one_line_error(res, "cannot be written", "then rerun")
    assert (partial / f"{RELEASE_COMMIT}.tar.gz").read_bytes() == ARCHIVE  # not mistaken for a damaged archive
    (partial / "tree").unlink()
    again = fetch(server, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(server.behaviour.ranges) == 1 and json.loads(again.stdout)["downloaded"] == 0  # no second download
    assert tree(tmp_path / "paper-release") == expected_files()


def test_dest_elsewhere_and_paper_release_env(server: ReleaseServer, tmp_path: Path) -> None:
    dest = tmp_path / "elsewhere"
    res = cli("release", "fetch", "--dest", str(dest), cache=tmp_path / "cache", url=server.base_url)
    assert res.returncode == 0, res.stderr[-2000:]
    assert str(dest) in res.stdout and f"set LITE_ALIGN_PAPER_RELEASE={dest}" in res.stdout
    assert tree(dest) == expected_files()
    env = {"LITE_ALIGN_PAPER_RELEASE": str(dest)}
    where = cli("release", "path", "--json", cache=tmp_path / "cache", url=server.base_url, env=env)
    info = json.loads(where.stdout)
    assert info["path"] == str(dest) and info["verified"] is True and info["datasets"] == ["ConflictingQA", "LIMA-OE"]


def test_release_errors_are_one_line_with_the_fix(server: ReleaseServer, tmp_path: Path) -> None:
    url = server.base_url
    assert_one_line_error(
        cli("diversity", "--release", "ConflictingQA", cache=tmp_path, url=url),
        "the paper's release is not in",
        "lite-align release fetch",
    )
    assert_one_line_error(cli("release", "path", cache=tmp_path, url=url), "lite-align release fetch")
    assert_one_line_error(cli("release", "fetch", cache=tmp_path, url=url + "/nowhere"), "not found (HTTP 404)")
    dead = f"http://127.0.0.1:{free_port()}/tar.gz"
    assert_one_line_error(cli("release", "fetch", cache=tmp_path, url=dead), "cannot reach the server", "rerun")
    assert fetch(server, tmp_path).returncode == 0
    assert_one_line_error(
        cli("diversity", "--release", "Nope", cache=tmp_path, url=url), "no dataset 'Nope'", "ConflictingQA, LIMA-OE"
    )
    assert_one_line_error(
        cli("diversity", "--release", "ConflictingQA/outputs-temp1", cache=tmp_path, url=url),
        "no folder 'outputs-temp1'",
    )
    assert_one_line_error(
        cli("diversity", "--release", "ConflictingQA", "mistral", cache=tmp_path, url=url),
        "mistral: no such set",
        "choose one of base, gpt",
    )
    assert_one_line_error(cli("diversity", cache=tmp_path, url=url), "give PATH..., or --release DATASET")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
