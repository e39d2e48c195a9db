"""Data-to-text files as (context, reference) pairs: E2E (LoRA-style `MR||reference` text or the official
CSV), WebNLG 2017 and DART (the JSON files of the LoRA repository), and generated E2E-style lines for tests.

Contexts use the LoRA/prefix-tuning linearisation (`key : value | key : value`; triples `s : p : o | …`),
so the same task code serves all three datasets.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import random
import re
import urllib.request
from pathlib import Path

from contnet.registry import ConfigError
from .common import download_failure

log = logging.getLogger("contnet")

SPLITS = ("train", "valid", "test")
E2E_CSV = {"train": "trainset.csv", "valid": "devset.csv", "test": "testset_w_refs.csv"}
# the LoRA-style files renamed a few official attributes
E2E_KEYS = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}
# pinned source of the LoRA-style E2E files (the same bytes as the project's data folder)
LORA_E2E_URL = ("https://raw.githubusercontent.com/microsoft/LoRA/c4593f060e6a368d7bb5af5273b8e42810cdef90/"
                "examples/NLG/data/e2e/{split}.txt")
WEBNLG_FILES = {"train": "train.json", "valid": "dev.json", "test": "test.json"}
DART_FILES = {"train": "dart-v1.1.1-full-train.json", "valid": "dart-v1.1.1-full-dev.json",
              "test": "dart-v1.1.1-full-test.json"}

Pair = tuple[str, str]


def expected_files(dataset: str, split: str) -> str:
    """The file name(s) a split is read from, for messages."""
    if dataset == "e2e":
        return f"{split}.txt or {E2E_CSV[split]}"
    return (WEBNLG_FILES if dataset == "webnlg" else DART_FILES)[split]


def _read_text(path: Path) -> str:
    """The file's text; a UTF-8 byte order mark (as editors and spreadsheets save it) is not part of it."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); the file is corrupt or not a data file, "
                          "replace it with the dataset's file") from None


def _nonempty(pairs: list[Pair], path: Path, what: str) -> list[Pair]:
    if not pairs:
        raise ConfigError(f"{path}: no examples in the file (empty?); expected {what}; replace it with the "
                          "dataset's file or remove it")
    return pairs


def read_e2e_txt(path: Path) -> list[Pair]:
    pairs = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("||")]
        empty = [what for what, f in zip(("MR", "reference"), fields) if not f]
        found = ("no '||'" if len(fields) == 1 else f"{len(fields)} fields ({len(fields) - 1} '||')"
                 if len(fields) > 2 else f"an empty {empty[0]}" if empty else "")
        if found:
            raise ConfigError(f"{path}:{n}: expected 'MR||reference', found {found} in {line[:60]!r}; "
                              "fix or remove the line")
        pairs.append((fields[0], fields[1]))
    return _nonempty(pairs, path, "'MR||reference' lines")


def official_mr_to_lora(mr: str) -> str:
    """`name[Alimentum], eatType[pub]` -> `name : Alimentum | Type : pub` (attribute order kept)."""
    items = re.findall(r"\s*([^\[,]+)\[([^\]]*)\]", mr)
    if not items:
        raise ConfigError(f"cannot parse E2E MR {mr[:60]!r}")
    return " | ".join(f"{E2E_KEYS.get(k.strip(), k.strip())} : {v.strip()}" for k, v in items)


def read_e2e_csv(path: Path) -> list[Pair]:
    """Official CSV (columns mr, ref); references stay as written (untokenised, unlike the LoRA files)."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    pairs = []
    try:
        if reader.fieldnames is None:
            raise ConfigError(f"{path}: empty file; expected a CSV with columns 'mr' and 'ref'")
        if not {"mr", "ref"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: expected columns 'mr' and 'ref', found {list(reader.fieldnames)}")
        for r in reader:
            where = f"{path}:{reader.line_num}"
            if None in r:                               # DictReader's place for the fields past the header's
                raise ConfigError(f"{where}: {len(reader.fieldnames) + len(r[None])} fields where the header has "
                                  f"{len(reader.fieldnames)}; expected columns 'mr' and 'ref' (quote a field that "
                                  "holds a comma)")
            if not r["mr"] or not (r["ref"] or "").strip():
                raise ConfigError(f"{where}: a row without its mr or ref")
            try:
                pairs.append((official_mr_to_lora(r["mr"]), " ".join(r["ref"].split())))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    except csv.Error as e:
        raise ConfigError(f"{path}:{reader.line_num}: not a valid CSV file ({e})") from None
    return _nonempty(pairs, path, "CSV rows with columns 'mr' and 'ref'")


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the file is corrupt or truncated, "
                          "replace it with the dataset's file") from None


class DownloadFailed(ConfigError):
    """task.download=true could not fetch a file; the message says why (the caller decides what next)."""


def download_e2e(data_dir: Path, split: str, timeout: float = 15.0) -> Path:
    """Fetch `{split}.txt` of the pinned LoRA copy; DownloadFailed (also logged) when it cannot."""
    target = Path(data_dir) / f"{split}.txt"
    url = LORA_E2E_URL.format(split=split)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except OSError as e:
        why = download_failure(e, [url])
        log.warning("could not download E2E %s split: %s", split, why)
        raise DownloadFailed(f"task.download=true could not fetch {target.name}: {why}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.rename(target)
    return target


def load_e2e(data_dir, split: str, fmt: str = "auto", download: bool = False) -> list[Pair] | None:
    """Pairs of one split ('train' | 'valid' | 'test'), or None when the files are absent (with `download`: fetched,
    or DownloadFailed saying why not)."""
    d = Path(data_dir).expanduser()
    txt, csv_path = d / f"{split}.txt", d / E2E_CSV[split]
    if fmt in ("auto", "txt") and txt.exists():
        return read_e2e_txt(txt)
    if fmt in ("auto", "csv") and csv_path.exists():
        return read_e2e_csv(csv_path)
    if fmt not in ("auto", "txt", "csv"):
        raise ConfigError(f"task.format='{fmt}' is unknown; choose auto, txt or csv")
    if download and fmt != "csv":
        return read_e2e_txt(download_e2e(d, split))
    return None


def _clean(x: str) -> str:
    return " ".join(str(x).replace("_", " ").strip('"').split())


def load_webnlg(data_dir, split: str, fmt: str = "auto", download: bool = False) -> list[Pair] | None:
    """WebNLG 2017 JSON as in the LoRA repository: lexicalisations marked 'good' only."""
    path = Path(data_dir).expanduser() / WEBNLG_FILES[split]
    if not path.exists():
        return None
    pairs = []
    try:
        for entry in _read_json(path)["entries"]:
            for item in entry.values():
                triples = (item.get("modifiedtripleset")
                           or item.get("originaltriplesets", {}).get("originaltripleset", [[]])[0])
                context = " | ".join(f"{_clean(t['subject'])} : {_clean(t['property'])} : {_clean(t['object'])}"
                                     for t in triples)
                for lex in item.get("lexicalisations", []):
                    if lex.get("comment", "good") == "good":
                        pairs.append((context, " ".join(lex["lex"].split())))
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ConfigError(f"{path}: not WebNLG JSON as in the LoRA repository (no {e} where expected)") from None
    return _nonempty(pairs, path, "WebNLG entries with lexicalisations")


def load_dart(data_dir, split: str, fmt: str = "auto", download: bool = False) -> list[Pair] | None:
    """DART v1.1.1 JSON: every annotation of every triple set; relations lower-cased as in LoRA's converter."""
    path = Path(data_dir).expanduser() / DART_FILES[split]
    if not path.exists():
        return None
    pairs = []
    try:
        for item in _read_json(path):
            context = " | ".join(f"{_clean(s)} : {_clean(p).lower()} : {_clean(o)}" for s, p, o in item["tripleset"])
            for ann in item.get("annotations", []):
                pairs.append((context, " ".join(ann["text"].split())))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{path}: not DART v1.1.1 JSON (no {e} where expected)") from None
    return _nonempty(pairs, path, "DART triple sets with annotations")


LOADERS = {"e2e": load_e2e, "webnlg": load_webnlg, "dart": load_dart}

# --- generated E2E-style data (tests and machines without the files) -------------------------------------------
NAMES = ["The Vaults", "Alimentum", "Cocum", "Blue Spice", "The Mill", "Zizzi", "Aromi", "The Eagle", "Fitzbillies",
         "Wildwood", "Giraffe", "Loch Fyne"]
FOODS = ["Italian", "French", "Chinese", "English", "Indian", "Japanese", "Fast food"]
TYPES = ["pub", "restaurant", "coffee shop"]
AREAS = ["city centre", "riverside"]
PRICES = ["cheap", "moderate", "high", "less than £ 20", "more than £ 30"]
NEAR = ["Café Sicilia", "Burger King", "The Bakers", "Raja Indian Cuisine", "Crowne Plaza Hotel"]


def synthetic_e2e(n_mrs: int, seed: int) -> list[Pair]:
    """E2E-looking MRs with 3 templated references each (deterministic in `seed`)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n_mrs):
        name, food, kind, area, price, near = (rng.choice(NAMES), rng.choice(FOODS), rng.choice(TYPES),
                                               rng.choice(AREAS), rng.choice(PRICES), rng.choice(NEAR))
        family = rng.choice(["yes", "no"])
        mr = (f"name : {name} | Type : {kind} | food : {food} | price : {price} | area : {area} | "
              f"family friendly : {family} | near : {near}")
        kid = "family - friendly" if family == "yes" else "not family - friendly"
        refs = [f"{name} is a {food} {kind} in the {area} near {near} . It is {kid} with {price} prices .",
                f"Near {near} in the {area} , {name} serves {food} food . It is a {kid} {kind} .",
                f"{name} is a {price} {kind} near {near} serving {food} food in the {area} ."]
        pairs += [(mr, r) for r in refs]
    return pairs
