"""Makes the blocking client (``python/vmm/_sync/``) from the asyncio one (``python/vmm/_async/``).

The package's classes are written once, as coroutines; ``unasync`` removes ``async`` and
``await`` and renames what differs (``httpx.AsyncClient`` → ``httpx.Client``…).

    python vmm-py/make_sync.py           # rewrite _sync/ after editing _async/
    python vmm-py/make_sync.py --check   # fail if _sync/ is not what _async/ makes (CI)
"""

import difflib
import sys
import tempfile
from pathlib import Path

import unasync

HERE = Path(__file__).resolve().parent / "python" / "vmm"
SOURCES = sorted((HERE / "_async").glob("*.py"))
REPLACEMENTS = {
    "AsyncClient": "Client",
    "aclose": "close",
    "asyncio": "time",
}
HEADER = "# Made by vmm-py/make_sync.py from vmm/_async/{name}: edit that file, not this one.\n"


def generate(out: Path) -> None:
    rule = unasync.Rule(fromdir=str(HERE / "_async") + "/", todir=str(out) + "/", additional_replacements=REPLACEMENTS)
    unasync.unasync_files([str(p) for p in SOURCES], rules=[rule])
    for path in out.glob("*.py"):
        text = path.read_text().replace(
            f"This file is the source: ``vmm/_sync/{path.name}`` is made from it",
            f"This file is made from ``vmm/_async/{path.name}``",
        )
        path.write_text(HEADER.format(name=path.name) + text)


def main() -> int:
    target = HERE / "_sync"
    if "--check" not in sys.argv[1:]:
        target.mkdir(exist_ok=True)
        generate(target)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for made in sorted(Path(tmp).glob("*.py")):
            have = target / made.name
            old = have.read_text().splitlines(True) if have.exists() else []
            new = made.read_text().splitlines(True)
            if old != new:
                stale.append(made.name)
                sys.stdout.writelines(difflib.unified_diff(old, new, str(have), f"{made.name} (made)"))
        extra = {p.name for p in target.glob("*.py")} - {p.name for p in Path(tmp).glob("*.py")}
        if stale or extra:
            print(f"vmm/_sync is stale ({', '.join(stale + sorted(extra))}): run python vmm-py/make_sync.py", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
