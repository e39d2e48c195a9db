"""Regenerate the golden-run fixtures (tests/golden/fixtures/<run id>.json and META.json): `make golden`.

The fixtures are the proof that a change moves no number: tests/golden/test_golden.py reruns every run of
tests/golden/runs.py and compares it with them record for record, bit for bit.  Regenerating them throws
that proof away, so it is never part of an ordinary change: a commit that changes a fixture must say in its
message why the numbers had to change (a bug fix that changes them on purpose, a new or changed golden
run, a new torch version) and from which commit's code the new fixtures were generated.

The fixtures are generated from committed code only: the package must import from a clean git tree (the
files under contnet/, cli/ and conf/ equal to the commit named in META.json).  To generate them from
another commit's code, check it out as a worktree, build an import root of it and point this script at both:

    git worktree add /tmp/base <sha>
    mkdir -p /tmp/src && cp -r /tmp/base/contnet /tmp/src/ && cp -r /tmp/base/cli /tmp/src/contnet/cli \\
        && cp -r /tmp/base/conf /tmp/src/contnet/conf
    cd /tmp && PYTHONPATH=/tmp/src:<this repo's root> <venv>/bin/python -m tests.golden.regenerate \\
        --import-root /tmp/src --source-repo /tmp/base --out <this repo>/tests/golden/fixtures

(the import root comes first on the path; a working directory without a contnet/ folder keeps the
current tree off it).  Each run is generated twice, in this process, and must give the same numbers twice;
the resumed run must equal its uninterrupted run.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.resources
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _tree_digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path → sha256 of every file under `folder` (caches and `skip` sub-folders left out)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc" or (rel.parts and rel.parts[0] in skip):
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def imported_from(import_root: Path) -> dict[str, str]:
    """Where contnet, its engine, its CLI and its config resources were imported from; all must lie under
    `import_root` (nothing from another checkout or an installed copy)."""
    import contnet
    import contnet.cli
    import contnet.engine.run
    where = {"contnet": contnet.__file__, "contnet.engine.run": contnet.engine.run.__file__,
             "contnet.cli": contnet.cli.__file__,
             "contnet.conf": str(importlib.resources.files("contnet.conf").joinpath("config.yaml"))}
    root = import_root.resolve()
    for name, path in where.items():
        if not Path(path).resolve().is_relative_to(root):
            raise SystemExit(f"golden: {name} imports from {path}, not from the import root {root}; "
                             "put the import root first on PYTHONPATH and run from a directory without contnet/")
    return {name: f"<import root>/{Path(path).resolve().relative_to(root).as_posix()}" for name, path in where.items()}


def portable(text: str, places: dict[str, Path]) -> str:
    """`text` with this machine's folders named by their role (no absolute machine path in a committed file)."""
    for role, path in sorted(places.items(), key=lambda kv: -len(str(kv[1]))):   # the longest path first
        text = text.replace(str(Path(path).resolve()), role).replace(str(path), role)
    return text


def source_sha(import_root: Path, source_repo: Path) -> str:
    """The commit whose code is imported: source_repo's HEAD, with contnet/, cli/ and conf/ clean there and
    (for a separate import root) the imported files equal to source_repo's."""
    dirty = _git(source_repo, "status", "--porcelain", "--", "contnet", "cli", "conf")
    if dirty:
        raise SystemExit(f"golden: {source_repo} has uncommitted changes under contnet/, cli/ or conf/; fixtures "
                         f"come from committed code only:\n{dirty}")
    if import_root.resolve() != source_repo.resolve():
        pairs = [(import_root / "contnet", source_repo / "contnet", ("cli", "conf")),
                 (import_root / "contnet" / "cli", source_repo / "cli", ()),
                 (import_root / "contnet" / "conf", source_repo / "conf", ())]
        for got, want, skip in pairs:
            if _tree_digest(got, skip) != _tree_digest(want):
                raise SystemExit(f"golden: {got} differs from {want}: the import root is not a copy of the source")
    return _git(source_repo, "rev-parse", "HEAD")


def environment() -> dict:
    import torch
    versions = {}
    for mod in ("numpy", "sklearn", "transformers", "peft"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except ImportError:
            versions[mod] = None
    from contnet.metrics.coco import java_available
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "python": platform.python_version(), "system": platform.system(),
            "other_versions": versions, "java": java_available()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.golden.regenerate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "fixtures", help="fixture folder (default: %(default)s)")
    ap.add_argument("--import-root", type=Path, default=REPO,
                    help="the folder contnet must be imported from (default: this repository)")
    ap.add_argument("--source-repo", type=Path, default=None,
                    help="the git checkout whose committed code the import root holds (default: the import root)")
    args = ap.parse_args(argv)

    from tests.golden import runs             # this repository's run list (cwd or PYTHONPATH), whatever contnet is
    where = imported_from(args.import_root)
    sha = source_sha(args.import_root, args.source_repo or args.import_root)
    fixtures = {}
    for run_id in runs.RUNS:
        first, second = runs.result(run_id), runs.result(run_id)
        if runs.dumps(first) != runs.dumps(second):
            raise SystemExit(f"golden: {run_id} gave different numbers twice in one process: not deterministic")
        if run_id in runs.RESUMED:
            resumed = first["resumed"]
            if runs.dumps(resumed["records"]) != runs.dumps(first["records"]) or resumed["summary"] != first["summary"]:
                raise SystemExit(f"golden: {run_id}: the stopped and resumed run differs from the uninterrupted run")
        fixtures[run_id] = {"id": run_id, "overrides": runs.RUNS[run_id], **first}
        print(f"golden: {run_id}: {len(first['records'])} records, status {first['summary']['status']}", flush=True)
    stray = {m: f for m, f in ((m, getattr(mod, "__file__", None)) for m, mod in list(sys.modules.items())
                                 if m == "contnet" or m.startswith("contnet."))
             if f and not Path(f).resolve().is_relative_to(args.import_root.resolve())}
    if stray:                                 # every contnet module the runs imported, not only the first four
        raise SystemExit(f"golden: modules imported from outside {args.import_root}: {stray}")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        old.unlink()                          # a run taken out of the list leaves no fixture behind
    for run_id, fixture in fixtures.items():
        (args.out / f"{run_id}.json").write_text(runs.dumps(fixture))
    pythonpath = os.environ.get("PYTHONPATH")
    command = " ".join(([f"PYTHONPATH={shlex.quote(pythonpath)}"] if pythonpath else [])
                       + [shlex.quote(a) for a in ["python", "-m", "tests.golden.regenerate",
                                                   *(argv if argv is not None else sys.argv[1:])]])
    command = portable(command, {"<import root>": args.import_root, "<this repo>": REPO,
                                 "<source checkout>": args.source_repo or args.import_root})
    meta = {"git_sha": sha, **environment(), "command": command, "imported_from": where, "runs": list(runs.RUNS),
            "regenerate": "make golden (tests/golden/regenerate.py); justify it in the commit message",
            "bitwise_when": "torch and cpu_capability equal these (tests/golden/test_golden.py; elsewhere its stated "
                            "tolerance, and it says so)"}
    (args.out / "META.json").write_text(runs.dumps(meta))
    print(f"golden: fixtures in {args.out} from {sha} (torch {meta['torch']}, {meta['cpu_capability']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
