"""Each setting is described once (sandboxd/settings.py): the command line's help and the
settings table of the documentation are made from the same records."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import subprocess
import sys

from sandboxd.settings import SETTINGS, Settings, add_arguments

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "settings_table.py"


def check() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )


def test_the_documented_table_is_the_generated_one() -> None:
    done = check()
    assert done.returncode == 0, done.stderr


def test_the_check_fails_on_a_changed_row(tmp_path: pathlib.Path) -> None:
    """The same check on a copy of the document with one default edited fails, naming it."""
    script = tmp_path / "scripts" / "settings_table.py"
    script.parent.mkdir()
    script.write_text(SCRIPT.read_text())
    (tmp_path / "docs").mkdir()
    document = tmp_path / "docs" / "operations.md"
    text = (ROOT / "docs" / "operations.md").read_text()
    document.write_text(text)
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    edited = text.replace("| `SANDBOXD_WARM_WORKERS` | 4 |", "| `SANDBOXD_WARM_WORKERS` | 5 |")
    assert edited != text
    document.write_text(edited)
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == (
        "docs/operations.md: stale settings table (run scripts/settings_table.py)\n"
    )


def test_every_field_is_a_setting_with_its_own_flag_and_variable() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"sources"}
    assert {s.name for s in SETTINGS} == fields
    flags = [s.flag for s in SETTINGS if s.flag is not None]
    envs = [s.env for s in SETTINGS]
    assert len(set(flags)) == len(flags) and len(set(envs)) == len(envs)
    assert all(e.startswith("SANDBOXD_") for e in envs)


def test_the_help_shows_each_flag_with_its_default_and_variable() -> None:
    parser = argparse.ArgumentParser(prog="sandboxd serve")
    add_arguments(parser)
    helps = {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}
    for s in SETTINGS:
        if s.flag is None:
            assert s.env in helps["--redis-password-file"]  # the one variable without a flag
            continue
        assert helps[s.flag].startswith(s.help), s.flag
        assert f"default {s.shown}) [env {s.env}]" in helps[s.flag], helps[s.flag]
