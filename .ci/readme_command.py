"""Print the command of README.md that follows `<!-- readme-command: NAME -->`.

CI (.ci/run) and the newcomer test run the README's own set-up and test commands, taken from
the README itself, so what the README tells a newcomer is what is tested. Standard library
only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = r"<!-- readme-command: {name} -->\s*\n```(?:bash|sh)\n(?P<command>.*?)\n```"


def readme_command(name: str, readme: Path = README) -> str:
    """The code block marked `name`, exactly as written."""
    match = re.search(_BLOCK.format(name=re.escape(name)), readme.read_text(encoding="utf-8"), re.S)
    if match is None:
        known = re.findall(r"<!-- readme-command: (\S+) -->", readme.read_text(encoding="utf-8"))
        raise SystemExit(f"{readme}: no command marked {name!r} (marked: {', '.join(known) or 'none'})")
    return match.group("command")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: readme_command.py NAME")
    print(readme_command(sys.argv[1]))
