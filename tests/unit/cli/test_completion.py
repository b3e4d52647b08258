"""`warren completion bash|zsh|fish`: the bash script, sourced in a real bash, completes commands,
subcommands (aliases too) and options; the zsh and fish scripts are each that shell's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.cli.fake_api import FakeManager, run

pytest.importorskip("shtab")


def script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    fake = FakeManager({})
    assert run(fake, "completion", shell) == 0
    assert fake.requests == []  # no manager is asked anything
    return capsys.readouterr().out


def complete(path: Path, *words: str) -> list[str]:
    """What bash offers for the last of `words` (the word being completed), as it would at a TAB."""
    array = " ".join(f"'{w}'" for w in ("warren", *words))
    program = (f"source {path}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; "
               f"COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; "
               "_shtab_warren; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                          timeout=30, check=True)
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_the_bash_script_completes_commands_and_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "warren.bash"
    path.write_text(script("bash", capsys))
    assert complete(path, "serv") == ["service"]
    assert complete(path, "c") == ["cluster", "config", "completion"]
    assert complete(path, "service", "sc") == ["scale"]
    assert sorted(complete(path, "node", "l")) == ["list", "ls"]
    assert complete(path, "node", "update", "--label") == ["--label-add", "--label-rm"]
    assert "--detach" in complete(path, "service", "update", "--de")
    assert complete(path, "completion", "f") == ["fish"]


def test_zsh_and_fish_get_their_own_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    zsh = script("zsh", capsys)
    assert zsh.startswith("#compdef warren") and "_shtab_warren_service" in zsh
    fish = script("fish", capsys)
    assert "complete -c warren" in fish and "service" in fish
    for shell, text in (("zsh", zsh), ("fish", fish)):
        binary = shutil.which(shell)
        if binary is not None:  # the shell itself checks the syntax where it is installed
            subprocess.run([binary, "-n"], input=text, text=True, check=True, timeout=30)


def test_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeManager({}), "completion", "tcsh") == 2
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err
