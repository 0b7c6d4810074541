"""Write the results page (``docs/results.md``) from ``benchmarks/results/``.

Run by ``docs/conf.py`` at every build, so the page is never typed by hand: for each
benchmark output, newest run first, the command that reproduces it (from the table of
``benchmarks/README.md``), the machine (from the results folder's README), the header
the script printed (versions, threads, seeds, budgets), the output as printed, and the
figures of the same run.

Usage: ``python docs/make_results.py [OUT]`` (default ``docs/results.md``).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _commands() -> dict[str, str]:
    """Each benchmark script's command, from the table of benchmarks/README.md."""
    commands = {}
    for line in (ROOT / "benchmarks" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith(".py`"):
            commands[cells[0].strip("`")[: -len(".py")]] = cells[-1].strip("`")
    return commands


def _script_of(stem: str, scripts: list[str]) -> str | None:
    """The benchmark a result file comes from: the longest script name its name starts with."""
    matches = [s for s in scripts if stem == s or stem.startswith(s + "_")]
    return max(matches, key=len) if matches else None


def _header(text: str) -> list[str]:
    """The lines the script printed first (versions, threads, seeds, budgets)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            break
        lines.append(line.rstrip())
    return lines[:6]


def _machine(folder: Path) -> str:
    readme = folder.parent / "README.md"
    text = readme.read_text() if readme.exists() else ""
    found = re.search(
        rf"The\s+{re.escape(folder.name)}\s+runs\s+were\s+taken\s+on\s+([^.(]+)", text
    )
    return " ".join(found.group(1).split()) if found else "see benchmarks/results/README.md"


def write_results(out: Path) -> Path:
    """Write the page (and copy the figures beside it); return its path."""
    commands = _commands()
    figures = out.parent / "_results"
    shutil.rmtree(figures, ignore_errors=True)
    figures.mkdir(parents=True)
    parts = [
        "# Results\n",
        (
            "Every benchmark of `benchmarks/` prints pyro_dgm's figures beside its peers' "
            "(zuko, Pyro's own flows, normflows, a raw PyTorch loop) from one run, on held-out "
            "test data. This page is generated from `benchmarks/results/` by "
            "`docs/make_results.py`: each output as the script printed it, the command that "
            "reproduces it and the machine it ran on. Run the benchmarks on an idle machine; "
            "timings on a shared machine swing by tens of percent.\n"
        ),
    ]
    for folder in sorted((p for p in RESULTS.iterdir() if p.is_dir()), reverse=True):
        parts.append(f"## Runs of {folder.name}\n\nMachine: {_machine(folder)}.\n")
        for result in sorted(folder.glob("*.txt")):
            text = result.read_text()
            script = _script_of(result.stem, list(commands))
            command = commands.get(script, "see benchmarks/README.md") if script else "-"
            rows = [
                ("file", f"`benchmarks/results/{folder.name}/{result.name}`"),
                ("benchmark", f"`benchmarks/{script}.py`" if script else "-"),
                ("command", f"`{command}`"),
                ("run", " / ".join(_header(text)[:3]).replace("|", "/") or "-"),
            ]
            table = "| | |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
            parts.append(f"### {result.stem}\n\n{table}\n```text\n{text.rstrip()}\n```\n")
            for png in sorted(folder.glob(f"{result.stem}*.png")):
                shutil.copy(png, figures / f"{folder.name}_{png.name}")
                parts.append(f"![{png.stem}](_results/{folder.name}_{png.name})\n")
    out.write_text("\n".join(parts))
    return out


if __name__ == "__main__":
    print(write_results(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "results.md"))
