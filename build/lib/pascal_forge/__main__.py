"""`python -m pascal_forge`, and the `pascal-forge` command: a Ctrl-C while the tool starts is one line.

Importing the command line takes about half a second (rich, rattler, boto3 are large). A Ctrl-C
in that time would otherwise end in Python's traceback, before cli.main can catch anything.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted (Ctrl-C) while starting; nothing was done\n")
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
