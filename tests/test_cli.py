"""The command line, end to end on real files and a real SQLite database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
