"""The command line, end to end on real files and a real SQLite database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.cli import main
from backchannel.store import Store

ROOT = Path(__file__).resolve().parent.parent
SLZ = ROOT / "replay_data" / "slz.jsonl"


def test_import_counts_added_present_and_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "bc.db")
    archive = tmp_path / "mixed.jsonl"
    lines = SLZ.read_text().splitlines()[:5]
    archive.write_text("\n".join([lines[0], "{not json", lines[1], '{"network": "x"}', *lines[2:]]) + "\n")
    assert main(["import", str(archive), "--db", db, "--event", "slz"]) == 1
    out, err = capsys.readouterr()
    assert "5 added, 0 already present, 2 rejected" in out
    assert "line 2" in err and "line 4" in err
    assert main(["import", str(SLZ), "--db", db, "--event", "slz"]) == 0
    out, _ = capsys.readouterr()
    assert "53 added, 5 already present, 0 rejected" in out
    with Store(db) as store:
        assert store.count("slz") == 58


def test_import_defaults_the_event_to_the_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "bc.db")
    assert main(["import", str(SLZ), "--db", db]) == 0
    assert "event 'slz'" in capsys.readouterr().out
    assert main(["events", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == "slz\t58 messages"


def test_import_every_sample_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "bc.db")
    data = ROOT / "tests" / "data"
    for name in ("mastodon_tag_slz.json", "twarc2_slz.jsonl", "tags_slz.csv"):
        main(["import", str(data / name), "--db", db, "--event", "mixed"])
    out = capsys.readouterr().out
    assert out.count("added") == 3
    with Store(db) as store:
        networks = {m.message.network.value for m in store.messages("mixed")}
    assert networks == {"mastodon", "x"}


def test_bad_database_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--db", "mysql://nope"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err


def test_export_of_unknown_event_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--db", str(tmp_path / "bc.db"), "--event", "nope"]) == 2
    assert "no event named 'nope'" in capsys.readouterr().err


def test_export_post_and_archive_that_imports_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "bc.db")
    main(["import", str(SLZ), "--db", db])
    capsys.readouterr()
    assert main(["export", "--db", db, "--event", "slz"]) == 0
    post = capsys.readouterr().out
    assert "58" in post.splitlines()[0]
    assert "Abi Signorelli" in post
    parts = tmp_path / "parts"
    assert main(["export", "--db", db, "--event", "slz", "--part-size", "25", "--out", str(parts)]) == 0
    assert len(list(parts.iterdir())) == 3
    archive = tmp_path / "again.jsonl"
    assert main(["export", "--db", db, "--event", "slz", "--format", "jsonl", "--out", str(archive)]) == 0
    records = [json.loads(line) for line in archive.read_text().splitlines()]
    assert len(records) == 58
    other = str(tmp_path / "other.db")
    assert main(["import", str(archive), "--db", other, "--event", "slz"]) == 0
    with Store(other) as store:
        assert store.count("slz") == 58


@pytest.mark.parametrize("fmt", ["markdown", "jsonl"])
def test_export_out_errors_are_clear_and_a_symlink_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    db = str(tmp_path / "bc.db")
    main(["import", str(SLZ), "--db", db])
    export = ["export", "--db", db, "--event", "slz", "--format", fmt, "--out"]
    assert main([*export, str(tmp_path / "missing" / "slz.out")]) == 2
    assert "the directory" in capsys.readouterr().err
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "slz.out"
    link.symlink_to(victim)
    assert main([*export, str(link)]) == 2
    assert "symbolic link" in capsys.readouterr().err and victim.read_text() == "precious"
    assert main([*export, str(link), "--force"]) == 0
    assert "Abi Signorelli" in victim.read_text() and link.is_symlink()


def test_a_template_cannot_run_python(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "bc.db")
    main(["import", str(SLZ), "--db", db])
    proof = tmp_path / "pwned"
    template = tmp_path / "evil.md.j2"
    template.write_text("{{ cycler.__init__.__globals__.os.popen('touch " + str(proof) + "').read() }}")
    assert main(["export", "--db", db, "--event", "slz", "--template", str(template)]) == 2
    assert "unsafe" in capsys.readouterr().err
    assert not proof.exists()


def test_export_questions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "bc.db")
    main(["import", str(SLZ), "--db", db])
    capsys.readouterr()
    assert main(["export", "--db", db, "--event", "slz", "--filter", "unanswered", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "Will we lose skills" in out and "Are chatrooms passe" in out
    assert "Thanks to @joningham" not in out


def test_replay_ctrl_c_stops_cleanly_and_keeps_what_it_took(tmp_path: Path) -> None:
    db = tmp_path / "bc.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # At 60x the 62-minute session takes a minute: stop it a few messages in.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backchannel",
            "-v",
            "replay",
            str(SLZ),
            "--event",
            "slz",
            "--db",
            str(db),
            "--speed",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    shown = [proc.stdout.readline() for _ in range(3)]
    assert all("@" in line for line in shown)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "stopped slz.jsonl" in out
    taken = int(out.split("stopped slz.jsonl into event 'slz': ")[1].split(" added")[0])
    assert 3 <= taken < 58
    assert "Traceback" not in err
    with Store(str(db)) as store:
        assert store.count("slz") == taken


def test_import_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    archive = write_big_archive(tmp_path / "big.jsonl", 200_000)
    db = tmp_path / "bc.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "backchannel", "import", str(archive), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not Path(f"{db}-wal").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a file: the import gives no other sign it has begun writing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "backchannel: interrupted" and "Traceback" not in err


def test_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    db = tmp_path / "bc.db"
    result = subprocess.run(
        [sys.executable, "-m", "backchannel", "user", "add", "alice", "--db", str(db)],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "saved" in result.stdout
    from backchannel.server.security import verify_password

    with Store(str(db)) as store:
        assert verify_password(store.password_hash("alice"), "correct horse battery")
        assert not verify_password(store.password_hash("alice"), "wrong")


# -- exit statuses: the database failing for good -------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backchannel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def database_failure(done: subprocess.CompletedProcess[str]) -> tuple[str, int]:
    """The one line a command that met a permanent database failure ends with: its
    reason and the count it reports having stored."""
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("backchannel:")]
    reason, _, count = line.removeprefix("backchannel: the database failed: ").rpartition("; ")
    return reason, int(count.split(" messages stored")[0].replace(",", ""))


@pytest.mark.parametrize("command", ["import", "replay"])
def test_a_read_only_database_ends_with_exit_3_and_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "bc.db"
    Store(str(path)).close()
    speed = ["--speed", "0"] if command == "replay" else []
    done = run_cli(
        command, str(SLZ), "--event", "slz", *speed, "--db", f"sqlite:///file:{path}?mode=ro&uri=true"
    )
    assert database_failure(done) == ("attempt to write a readonly database", 0)


@pytest.mark.postgres
def test_a_read_only_postgres_database_ends_with_exit_3(postgres_url: str) -> None:
    import psycopg

    Store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    reason, stored = database_failure(
        run_cli("replay", str(SLZ), "--event", "slz", "--speed", "0", "--db", postgres_url)
    )
    assert "read-only transaction" in reason and stored == 0


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a disk that really fills up. Mounting one needs CAP_SYS_ADMIN (these
    tests run as root in a container that grants it); without it the test is skipped."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def write_big_archive(path: Path, count: int) -> Path:
    """A JSONL archive of `count` messages of some 200 bytes each."""
    with path.open("wb") as fh:
        for i in range(1, count + 1):
            record = {
                "network": "x",
                "network_id": str(i),
                "author_handle": f"user{i % 97}",
                "text": f"message {i} " + "padding " * 20,
                "created_at": f"2026-05-04T09:{i // 3600 % 60:02d}:{i // 60 % 60:02d}Z",
            }
            fh.write(json.dumps(record).encode() + b"\n")
    return path


def test_a_full_disk_ends_with_exit_3_and_the_count_stored(tmp_path: Path, tiny_filesystem: Path) -> None:
    archive = write_big_archive(tmp_path / "big.jsonl", 30_000)
    db = tiny_filesystem / "bc.db"
    reason, stored = database_failure(run_cli("import", str(archive), "--event", "big", "--db", str(db)))
    assert reason == "database or disk is full"
    with Store(str(db), migrate=False) as store:
        assert 0 < stored == store.count("big") < 30_000
