"""`warren completion bash|zsh|fish`: the shell completion script of the whole command tree, printed to
stdout, generated from the parser by shtab (a static script: completing costs the shell no Python
start; docs/install.md says where each shell reads it)."""

from __future__ import annotations

import argparse

from warren.cli.parsing import Subparsers, add_command

SHELLS = ("bash", "zsh", "fish")

EPILOG = """\
install (then open a new shell):
  bash:  warren completion bash > ~/.local/share/bash-completion/completions/warren
  zsh:   warren completion zsh > ~/.zfunc/_warren    # with fpath+=(~/.zfunc); autoload -U compinit; compinit
  fish:  warren completion fish > ~/.config/fish/completions/warren.fish
"""


def register(commands: Subparsers) -> None:
    completion = add_command(commands, "completion", "print the shell completion script (bash, zsh, fish)",
                             "Print a script that makes the shell complete warren's commands and options.",
                             epilog=EPILOG, client=False)
    completion.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    completion.set_defaults(daemon_handler=completion_script)


def completion_script(args: argparse.Namespace) -> int:
    import shtab  # only this command needs it

    from warren.cli.main import build_parser  # the whole tree (main imports this module lazily)

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
