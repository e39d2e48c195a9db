"""No YAML block is repeated across conf/ (issue 12): a block shared by several files is one file named in their
defaults lists (conf/experiment/base/, conf/experiment/tune/, conf/optimizer/npacs/ ...), not a copy."""
from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO


CONF = REPO / "conf"
RUN = 3                                     # this many identical consecutive lines in two files is a copied block
# lines too common to mean a copy: defaults-list scaffolding and a lone key that opens a block (`trainer:`)
SCAFFOLD = {"defaults:", "- _self_", "hydra:", "sweeper:", "params:"}
LONE_KEY = re.compile(r"^[\w./@-]+:$")
COMMENT = re.compile(r"(^|\s)#.*$")


def content_lines(text: str) -> list[str]:
    """The lines of a YAML file that carry content: comments, blank lines and scaffolding dropped, stripped."""
    out = []
    for raw in text.splitlines():
        line = COMMENT.sub("", raw).strip()
        if line and line not in SCAFFOLD and not LONE_KEY.match(line):
            out.append(line)
    return out


def repeated_blocks(root: Path, run: int = RUN) -> dict[tuple[str, ...], list[str]]:
    """Every run of `run` consecutive content lines that appears in two or more files under `root`."""
    where: dict[tuple[str, ...], set[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        lines = content_lines(path.read_text())
        for i in range(len(lines) - run + 1):
            where.setdefault(tuple(lines[i:i + run]), set()).add(str(path.relative_to(root)))
    return {block: sorted(files) for block, files in where.items() if len(files) > 1}


def _describe(found: dict) -> str:
    return "\n".join(f"{' + '.join(files)}: {' / '.join(block)}" for block, files in sorted(found.items(),
                                                                                          key=lambda kv: kv[1]))


def test_detector_finds_a_copied_block_and_ignores_scaffolding(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text("defaults:\n  - _self_\ntrainer:\n  batch_size: 200   # spec\n"
                                           "  max_steps: 600\n  device: cpu\n")
    (tmp_path / "b.yaml").write_text("# other\ntrainer:\n\n  batch_size: 200\n  max_steps: 600\n  device: cpu\n")
    (tmp_path / "c.yaml").write_text("defaults:\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: 0\n")
    (tmp_path / "d.yaml").write_text("defaults:\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: 1\n")
    found = repeated_blocks(tmp_path)
    assert found == {("batch_size: 200", "max_steps: 600", "device: cpu"): ["a/x.yaml", "b.yaml"]}
    (tmp_path / "b.yaml").write_text("trainer:\n  batch_size: 200\n  max_steps: 300\n  device: cpu\n")
    assert repeated_blocks(tmp_path) == {}      # two equal lines are not a block


def test_experiment_presets_repeat_no_block():
    """conf/experiment/** shares through base presets and sub-groups; none of its files copies a block of any
    file under conf/."""
    found = {b: f for b, f in repeated_blocks(CONF).items() if any(x.startswith("experiment/") for x in f)}
    assert not found, "blocks repeated across conf/ files:\n" + _describe(found)


def test_no_yaml_block_is_repeated_across_conf():
    found = repeated_blocks(CONF)
    assert not found, "blocks repeated across conf/ files:\n" + _describe(found)
