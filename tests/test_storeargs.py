import argparse

import pytest

from metrotrace.tools import storeargs


def parse(*argv):
    parser = argparse.ArgumentParser()
    storeargs.add_store_args(parser)
    return parser.parse_args(argv)


def test_data_dir_gives_a_sqlite_url_and_creates_the_folder(tmp_path):
    url = storeargs.store_url(parse("--data-dir", str(tmp_path / "d")))
    assert url == f"sqlite:///{tmp_path / 'd' / storeargs.SQLITE_FILE}"
    assert (tmp_path / "d").is_dir()


def test_db_url_passes_through_and_nonsense_is_refused():
    assert storeargs.store_url(parse("--db", "postgresql://h/db")) == "postgresql://h/db"
    with pytest.raises(SystemExit, match="--db"):
        storeargs.store_url(parse("--db", "mysql://h/db"))


def test_both_at_once_is_refused():
    with pytest.raises(SystemExit):
        parse("--db", "postgresql://h/db", "--data-dir", "x")


def test_default_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("METROTRACE_DATA", str(tmp_path))
    assert storeargs.store_url(parse()).startswith(f"sqlite:///{tmp_path}")
