"""Bad input to every command ends in one error line and a documented exit code, never a traceback.

Each row of a table is one bad input: the command line (``{name}`` stands for a generated file), the exit code
and a fragment of the one line ``audiomamba COMMAND: error: ...`` that stderr must hold (docs/errors.md lists the
codes).  The files are generated here: damaged checkpoints are made by editing a real checkpoint's safetensors
metadata or tensors, broken configs, manifests, audio and training states by writing them.  Every call runs
``audiomamba.cli.main`` in this process; one test runs the installed console script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import audiomamba
from audiomamba.cli import main
from audiomamba.errors import EXIT_BUG, EXIT_INTERRUPTED
from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset

SR = 32000
TOY_SR = 16000
CUDA = torch.cuda.is_available()
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
ERROR_LINE = re.compile(r"^audiomamba( [a-z0-9-]+)?: error: ")


# ------------------------------------------------------------------------------------------------ generated files
class _Payload:
    """Unpickling this would create the folder ``marker``: proof that a pickle payload ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _meta_of(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["audiomamba"])


def _resave(src: Path, dst: Path, edit_meta=None, edit_tensors=None, raw_meta: str | None = None,
            no_meta: bool = False) -> Path:
    """A copy of checkpoint ``src`` with its metadata (``edit_meta(meta)``, or ``raw_meta`` verbatim) and/or
    tensors (``edit_tensors(dict)``) changed: how damaged checkpoints are made."""
    meta = _meta_of(src)
    tensors = load_file(str(src))
    if edit_meta is not None:
        meta = edit_meta(meta) or meta
    if edit_tensors is not None:
        edit_tensors(tensors)
    metadata = None if no_meta else {"audiomamba": raw_meta if raw_meta is not None else json.dumps(meta)}
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def _set(path: str, value):
    """An edit of a checkpoint config: ``meta[a][b] = value`` for path "a.b" (value ``...`` deletes the key)."""
    def edit(meta):
        node = meta
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        if value is ...:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


def _first_float(tensors: dict) -> str:
    return next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 4)


def _damaged_checkpoints(ck: Path, d: Path) -> dict[str, Path]:
    """name -> a broken checkpoint file (or folder), each wrong in one way."""
    out: dict[str, Path] = {}
    out["ck_missing"] = d / "missing.safetensors"
    (d / "folder.safetensors").mkdir()
    out["ck_dir"] = d / "folder.safetensors"
    out["ck_empty"] = d / "empty.safetensors"
    out["ck_empty"].write_bytes(b"")
    out["ck_random"] = d / "random.safetensors"
    out["ck_random"].write_bytes(np.random.default_rng(0).bytes(4096))
    out["ck_truncated"] = d / "truncated.safetensors"
    out["ck_truncated"].write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    out["ck_huge_header"] = d / "huge_header.safetensors"
    out["ck_huge_header"].write_bytes((2**62).to_bytes(8, "little") + b"{}")
    out["ck_pickle"] = d / "pickle.safetensors"
    torch.save({"model": {"w": torch.zeros(2)}}, out["ck_pickle"])
    out["ck_payload"] = d / "payload.safetensors"
    torch.save({"model": _Payload(str(d / "PAYLOAD_RAN_ck"))}, out["ck_payload"])
    out["ck_no_meta"] = _resave(ck, d / "no_meta.safetensors", no_meta=True)
    out["ck_not_json"] = _resave(ck, d / "not_json.safetensors", raw_meta="{'model': nano")
    out["ck_json_list"] = _resave(ck, d / "json_list.safetensors", raw_meta="[1, 2, 3]")
    out["ck_deep_json"] = _resave(ck, d / "deep_json.safetensors", raw_meta="[" * 100000 + "]" * 100000)
    edits = {
        "ck_format": _set("format", "timm"),
        "ck_version": _set("format_version", 99),
        "ck_version_str": _set("format_version", "1"),
        "ck_no_model": _set("model", ...),
        "ck_model_str": _set("model", "audiomamba_nano"),
        "ck_unknown_model": _set("model.name", "audiomamba_gigantic"),
        "ck_model_name_int": _set("model.name", 7),
        "ck_args_list": _set("model.args", [1, 2]),
        "ck_unknown_arg": _set("model.args.bogus", 1),
        "ck_file_arg": _set("model.args.pretrained_backbone", "/etc/passwd"),
        "ck_classes_str": _set("model.args.num_classes", "3"),
        "ck_classes_float": _set("model.args.num_classes", 3.5),
        "ck_classes_zero": _set("model.args.num_classes", 0),
        "ck_classes_other": _set("model.args.num_classes", 5),
        "ck_head_bogus": _set("model.args.head", "mlp"),
        "ck_layout_bogus": _set("model.args.layout", "sideways"),
        "ck_sr_huge": _set("model.args.sample_rate", 10**9),
        "ck_drop_nan": _set("model.args.drop_path_rate", float("nan")),
        "ck_extra_blocks": _set("model.args.extra_transformer_blocks", 100000),
        "ck_extra_blocks_2": _set("model.args.extra_transformer_blocks", 2),
        "ck_no_labels": _set("labels", ...),
        "ck_labels_str": _set("labels", "Speech,Dog,Music"),
        "ck_labels_ints": _set("labels", [1, 2, 3]),
        "ck_labels_short": lambda m: m.update(labels=m["labels"][:2]),
        "ck_labels_name_int": lambda m: m["labels"][0].update(display_name=5),
        "ck_multi_label_str": _set("multi_label", "yes"),
        "ck_meta_sr": _set("sample_rate", 16000),
        "ck_meta_sr_neg": _set("sample_rate", -1),
        "ck_provenance_list": _set("provenance", [1]),
    }
    for name, edit in edits.items():
        out[name] = _resave(ck, d / f"{name}.safetensors", edit_meta=edit)
    # a 15 MB-style file claiming 300000 classes (labels and all): refused from the header, nothing allocated
    out["ck_300k"] = _resave(ck, d / "ck_300k.safetensors", edit_meta=lambda m: m.update(
        labels=[{"index": i, "mid": "", "display_name": f"c{i}"} for i in range(300000)],
        model={**m["model"], "args": {**m["model"]["args"], "num_classes": 300000}}))

    def nan(t):
        t[_first_float(t)].view(-1)[3] = float("nan")

    def inf(t):
        t[_first_float(t)].view(-1)[0] = float("inf")

    def drop(t):
        del t[_first_float(t)]

    def extra(t):
        t["head.bogus.weight"] = torch.zeros(3)

    def reshape(t):
        k = _first_float(t)
        t[k] = torch.zeros(t[k].numel() + 1)

    def as_int(t):
        k = _first_float(t)
        t[k] = t[k].to(torch.int32)

    def int_as_float(t):
        k = next(k for k, v in t.items() if not v.is_floating_point())
        t[k] = t[k].float()

    for name, edit in {"ck_nan": nan, "ck_inf": inf, "ck_missing_tensor": drop, "ck_extra_tensor": extra,
                       "ck_bad_shape": reshape, "ck_int_weights": as_int, "ck_float_counter": int_as_float}.items():
        out[name] = _resave(ck, d / f"{name}.safetensors", edit_tensors=edit)
    return out


def _train_state(path: Path, **over) -> Path:
    from audiomamba.training.state import STATE_FORMAT

    state = {"format": STATE_FORMAT, "version": 1, "step": 1, "epoch": 0, "micro": 1, "model_name": "audiomamba_nano",
             "num_classes": 4, "world_size": 1, "model": {}, "optimizer": {}, **over}
    torch.save({k: v for k, v in state.items() if v is not ...}, path)
    return path


@pytest.fixture(scope="module")
def F(tmp_path_factory, nano_ckpt) -> dict[str, str]:
    """Every generated file, by the name the tables use."""
    d = tmp_path_factory.mktemp("bad")
    files: dict[str, Path] = {"ckpt": Path(nano_ckpt), "tmp": d}
    torch.manual_seed(0)
    files["lin"] = audiomamba.save_model(
        audiomamba.create_model("audiomamba_nano", num_classes=3, head="linear", layout="native"), d / "lin.safetensors",
        labels=["Speech", "Dog", "Music"])
    files["toy_ckpt"] = audiomamba.save_model(
        audiomamba.create_model("audiomamba_nano", num_classes=4, layout="native", sample_rate=TOY_SR),
        d / "toy.safetensors", labels=TOY_CLASSES[:4])
    files.update(_damaged_checkpoints(Path(nano_ckpt), d))
    # audio
    files["wav"] = d / "good.wav"
    sf.write(files["wav"], (np.random.default_rng(0).standard_normal(SR // 2) * 0.1).astype(np.float32), SR)
    files["corrupt_wav"] = d / "corrupt.wav"
    files["corrupt_wav"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    files["nan_wav"] = d / "nan.wav"
    wave = np.zeros(SR // 2, np.float32)
    wave[100:200] = np.nan
    sf.write(files["nan_wav"], wave, SR, subtype="FLOAT")
    files["missing_wav"] = d / "missing.wav"
    (d / "noaudio").mkdir()
    files["noaudio"] = d / "noaudio"
    (d / "dir.wav").mkdir()
    files["dir_wav"] = d / "dir.wav"
    # plain files and folders in the way of outputs
    files["afile"] = d / "afile.txt"
    files["afile"].write_text("x")
    (d / "adir").mkdir()
    files["adir"] = d / "adir"
    (d / "full").mkdir()
    (d / "full" / "x.txt").write_text("x")
    files["full"] = d / "full"
    # datasets: a good one, one with a malformed manifest line, one with a label the label file lacks
    files["toy"] = make_toy_dataset(d / "toy", {"train": 2, "validation": 1, "test": 2}, seconds=0.5, sample_rate=TOY_SR)
    bad = d / "bad_manifest"
    shutil.copytree(files["toy"], bad)
    for split in ("train", "test"):
        lines = (bad / f"{split}.jsonl").read_text().splitlines()
        lines.insert(1, '{"path": "audio/x.wav", "labels": [')
        (bad / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    files["bad_manifest"] = bad
    unknown = d / "unknown_label"
    shutil.copytree(files["toy"], unknown)
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (unknown / f"{split}.jsonl").read_text().splitlines()]
        rows[-1]["labels"] = ["Kazoo solo"]
        rows[-1].pop("events", None)
        (unknown / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files["unknown_label"] = unknown
    missing_audio = d / "missing_audio"
    shutil.copytree(files["toy"], missing_audio)
    shutil.rmtree(missing_audio / "audio" / "train")
    files["missing_audio"] = missing_audio
    # configs
    import yaml

    good = {"model": {"name": "audiomamba_nano", "layout": "native", "sample_rate": TOY_SR, "spec_augment": False},
            "data": {"root": str(files["toy"]), "validation": None, "clip_seconds": 0.5},
            "train": {"output_dir": str(d / "run"), "epochs": 1, "batch_size": 2, "progress": False,
                      "tensorboard": False, "threads": 1, "stop_after_steps": 1}}
    def config(name: str, text: str | bytes) -> Path:
        p = d / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    files["cfg"] = config("good.yaml", yaml.safe_dump(good))
    files["cfg_latin1"] = config("latin1.yaml", "model:\n  name: audiomamba_nano  # caf\xe9\n".encode("latin-1"))
    files["cfg_binary"] = config("binary.yaml", np.random.default_rng(1).bytes(300))
    files["cfg_bad_yaml"] = config("bad.yaml", "model:\n  name: [audiomamba_nano\ntrain:\n  epochs: 1\n")
    files["cfg_tabs"] = config("tabs.yaml", "model:\n\tname: audiomamba_nano\n")
    files["cfg_list"] = config("list.yaml", "- model\n- data\n")
    files["cfg_scalar"] = config("scalar.yaml", "just a string\n")
    files["cfg_section_scalar"] = config("section_scalar.yaml", yaml.safe_dump({**good, "train": 5}))
    files["cfg_unknown_key"] = config("unknown_key.yaml", yaml.safe_dump({**good, "train": {**good["train"], "epoch": 3}}))
    files["cfg_unknown_section"] = config("unknown_section.yaml", yaml.safe_dump({**good, "trainer": {}}))
    files["cfg_bad_manifest"] = config("bad_manifest.yaml", yaml.safe_dump({**good, "data": {**good["data"], "root": str(bad)}}))
    files["cfg_unknown_label"] = config("unknown_label.yaml",
                                        yaml.safe_dump({**good, "data": {**good["data"], "root": str(unknown)}}))
    files["cfg_missing_audio"] = config("missing_audio.yaml",
                                        yaml.safe_dump({**good, "data": {**good["data"], "root": str(missing_audio)}}))
    files["cfg_no_root"] = config("no_root.yaml", yaml.safe_dump({k: v for k, v in good.items() if k != "data"}))
    files["cfg_number_key"] = config("number_key.yaml", yaml.safe_dump(good) + "1: 2\n")
    manifests = {  # name -> the one line of its train.jsonl and test.jsonl
        "m_dir_wav": '{"path": "audio/dir.wav", "labels": ["Beep"]}',
        "m_empty": None,
        "m_path_int": '{"path": 5, "labels": "Beep"}',
        "m_onset_after_offset": '{"path": "audio/train/000000.wav", "labels": ["Beep"], '
                                '"events": [{"label": "Beep", "onset": 0.4, "offset": 0.1}]}',
        "m_not_object": '["audio/train/000000.wav", "Beep"]',
    }
    for name, line in manifests.items():
        m = d / name
        shutil.copytree(files["toy"], m)
        (m / "audio" / "dir.wav").mkdir()
        for split in ("train", "test"):
            (m / f"{split}.jsonl").write_text("" if line is None else line + "\n")
        files[name] = m
        files[f"cfg_{name}"] = d / f"{name}.yaml"
        files[f"cfg_{name}"].write_text(yaml.safe_dump({**good, "data": {**good["data"], "root": str(m)}}))
    files["cfg_dir"] = d / "adir"
    # training states for --resume
    files["state_junk"] = d / "junk.pt"
    files["state_junk"].write_bytes(b"PK\x03\x04" + bytes(200))
    files["state_text"] = d / "text.pt"
    files["state_text"].write_text("not a checkpoint at all\n")
    files["state_payload"] = d / "payload.pt"
    torch.save({"format": "audiomamba-train-state", "x": _Payload(str(d / "PAYLOAD_RAN_state"))}, files["state_payload"])
    files["state_plain"] = d / "plain.pt"
    torch.save({"w": torch.zeros(2)}, files["state_plain"])
    files["state_other_model"] = _train_state(d / "other_model.pt", model_name="audiomamba_micro")
    files["state_no_optimizer"] = _train_state(d / "no_optimizer.pt", optimizer=...)
    files["state_truncated"] = d / "truncated.pt"
    files["state_truncated"].write_bytes(_train_state(d / "whole.pt").read_bytes()[:300])
    files["readonly"] = d / "readonly"
    files["readonly"].mkdir()
    files["readonly"].chmod(0o500)
    return {k: str(v) for k, v in files.items()}


# ------------------------------------------------------------------------------------------------ the check
TRIED: list[str] = []


def run_bad(capsys, F, argv: list[str], code: int, fragment: str) -> str:
    """Run ``audiomamba ARGV`` in process: it must exit ``code``; for codes >= 2, stderr must hold exactly one
    error line, of this command, containing ``fragment``; never a traceback.  Returns stderr."""
    argv = [a.format(**F) for a in argv]
    TRIED.append(" ".join(argv))
    got = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    command = argv[0] if argv and not argv[0].startswith("-") else None
    if code >= 2:
        assert len(lines) == 1, f"expected one error line, got {lines} (stderr: {err!r})"
        prefix = f"audiomamba {command}: error: " if command in COMMANDS else "audiomamba: error: "
        assert lines[0].startswith(prefix), lines[0]
        assert fragment.format(**F) in lines[0], f"{fragment!r} not in {lines[0]!r}"
    else:
        assert fragment.format(**F) in err, f"{fragment!r} not in {err!r}"
    assert got == code, f"exit {got}, expected {code}: {err}"
    return err


COMMANDS = ("tag", "train", "evaluate", "export", "data", "demo", "models", "convert")

# Damaged checkpoints: (file, fragment of the error).  Every one is exit 3 for every command that reads one.
CHECKPOINTS = [
    ("ck_missing", "checkpoint not found"),
    ("ck_dir", "is a directory"),
    ("ck_empty", "not a readable safetensors file"),
    ("ck_random", "not a readable safetensors file"),
    ("ck_truncated", "not a readable safetensors file"),
    ("ck_huge_header", "not a readable safetensors file"),
    ("ck_pickle", "PyTorch pickle file"),
    ("ck_payload", "unpickling can run code"),
    ("ck_no_meta", "not an audiomamba checkpoint"),
    ("ck_not_json", "is not valid JSON"),
    ("ck_json_list", "must be a JSON object"),
    ("ck_deep_json", "is not valid JSON"),
    ("ck_format", "not an audiomamba config"),
    ("ck_version", "unsupported config format_version 99"),
    ("ck_version_str", "unsupported config format_version '1'"),
    ("ck_no_model", "missing key 'model'"),
    ("ck_model_str", "missing key 'model'"),
    ("ck_unknown_model", "'audiomamba_gigantic': model.name is not a registered model"),
    ("ck_model_name_int", "model.name must be a string"),
    ("ck_args_list", "model.args must be an object"),
    ("ck_unknown_arg", "model.args.bogus is not an argument of audiomamba_nano"),
    ("ck_file_arg", "model.args.pretrained_backbone is not an argument"),
    ("ck_classes_str", "model.args.num_classes must be int, got '3'"),
    ("ck_classes_float", "model.args.num_classes must be int, got 3.5"),
    ("ck_classes_zero", "num_classes must be >= 1"),
    ("ck_classes_other", "weights do not match"),
    ("ck_head_bogus", "model.args.head must be one of tscam, linear"),
    ("ck_layout_bogus", "model.args.layout must be one of fold, native"),
    ("ck_sr_huge", "model.args.sample_rate must be in [1000, 384000]"),
    ("ck_drop_nan", "model.args.drop_path_rate must be float"),
    ("ck_extra_blocks", "model.args.extra_transformer_blocks=100000 is implausibly large"),
    ("ck_extra_blocks_2", "the file holds weights of 0 extra block(s)"),
    ("ck_no_labels", "missing key 'labels'"),
    ("ck_labels_str", "missing key 'labels'"),
    ("ck_labels_ints", "labels[0] must be an object with a string 'display_name'"),
    ("ck_labels_short", "2 labels for a model of 3 classes"),
    ("ck_labels_name_int", "labels[0] must be an object"),
    ("ck_multi_label_str", "multi_label must be true or false"),
    ("ck_meta_sr", "sample_rate 16000 differs from model.args.sample_rate 32000"),
    ("ck_meta_sr_neg", "sample_rate must be an integer"),
    ("ck_provenance_list", "provenance must be an object"),
    ("ck_300k", "has shape [3, 384, 2, 3] in the file, the model needs [300000, 384, 2, 3]"),
    ("ck_nan", "NaN/inf value(s)"),
    ("ck_inf", "NaN/inf value(s)"),
    ("ck_missing_tensor", "1 tensor(s) missing"),
    ("ck_extra_tensor", "1 unexpected (head.bogus.weight)"),
    ("ck_bad_shape", "in the file, the model needs"),
    ("ck_int_weights", "is stored as I32, expected a floating-point dtype"),
    ("ck_float_counter", "bn0.num_batches_tracked' is stored as F32, expected I64"),
]
# the few every other command is also tried with (tag gets them all)
CHECKPOINT_SAMPLE = ["ck_missing", "ck_random", "ck_payload", "ck_not_json", "ck_unknown_model", "ck_unknown_arg",
                     "ck_classes_str", "ck_300k", "ck_nan", "ck_bad_shape"]
FRAGMENT = dict(CHECKPOINTS)
# commands that check their --checkpoint option first name it
OPTION_FRAGMENT = {**FRAGMENT, "ck_missing": "--checkpoint {ck_missing}: no such file or directory"}


@pytest.fixture(autouse=True)
def _no_payload(F):
    yield
    assert not list(Path(F["tmp"]).glob("PAYLOAD_RAN*")), "a pickle payload ran"


# ------------------------------------------------------------------------------------------------ tag
TAG = [
    (["tag", "{wav}", "-c", "{ckpt}", "--threshold", "2"], 2, "--threshold must be in [0, 1], got 2"),
    (["tag", "{wav}", "-c", "{ckpt}", "--threshold", "-0.5"], 2, "--threshold must be in [0, 1], got -0.5"),
    (["tag", "{wav}", "-c", "{ckpt}", "--threshold", "nan"], 2, "--threshold must be a finite number"),
    (["tag", "{wav}", "-c", "{ckpt}", "--threshold", "inf"], 2, "--threshold must be a finite number"),
    (["tag", "{wav}", "-c", "{ckpt}", "--threshold", "high"], 2, "argument -t/--threshold: invalid float value"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-duration", "-1"], 2, "--min-duration must be >= 0, got -1"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-duration", "nan"], 2, "--min-duration must be a finite number"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-gap", "-0.1"], 2, "--min-gap must be >= 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--median-filter", "-2"], 2, "--median-filter must be in [0, 60]"),
    (["tag", "{wav}", "-c", "{ckpt}", "--events", "--median-filter", "1e9"], 2, "--median-filter must be in [0, 60]"),
    (["tag", "{wav}", "-c", "{ckpt}", "--batch-size", "0"], 2, "--batch-size must be >= 1, got 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--shifts", "0"], 2, "--shifts must be >= 1, got 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--shifts", "2", "--shift-frames", "0"], 2, "--shift-frames must be >= 1, got 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--top-k", "0"], 2, "--top-k must be >= 1, got 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--top-k", "three"], 2, "argument -k/--top-k: invalid int value: 'three'"),
    (["tag", "{wav}", "-c", "{ckpt}", "--workers", "-1"], 2, "--workers must be in [0, "),
    (["tag", "{wav}", "-c", "{ckpt}", "--workers", "100000"], 2, "--workers must be in [0, "),
    (["tag", "{wav}", "-c", "{ckpt}", "--device", "mps:7"], 2, "--device mps:7: not available here"),
    (["tag", "{wav}", "-c", "{ckpt}", "--window", "0"], 2, "--window must be > 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--hop", "-1"], 2, "--hop must be > 0"),
    (["tag", "{wav}", "-c", "{ckpt}", "--hop", "20", "--window", "10"], 2, "--hop (20 s) must not exceed --window"),
    (["tag", "{wav}", "-c", "{ckpt}", "--chunk", "inf"], 2, "--chunk must be a finite number"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-input", "-1"], 2, "--min-input must be in [0, 300]"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-input", "nan"], 2, "--min-input must be a finite number"),
    (["tag", "{wav}", "-c", "{ckpt}", "--min-input", "40", "--chunk", "30"], 2, "--min-input (40 s) must not exceed --chunk (30 s)"),
    (["tag", "{wav}", "-c", "{ckpt}", "--device", "banana"], 2, "--device 'banana': not a device"),
    (["tag", "{wav}", "-c", "{ckpt}", "--cuda-graph"], 2, "--cuda-graph needs a CUDA device"),
    (["tag", "{wav}", "-c", "{ckpt}", "--format", "xml"], 2, "argument -f/--format: invalid choice: 'xml'"),
    (["tag", "{wav}", "-c", "{ckpt}", "--dtype", "int8"], 2, "argument --dtype: invalid choice"),
    (["tag", "{wav}", "-c", "{ckpt}", "--bogus-option"], 2, "unrecognized arguments: --bogus-option"),
    (["tag", "{wav}", "-c", "{ckpt}", "--model", "x"], 2, "give --checkpoint or --model, not both"),
    (["tag", "{noaudio}", "-c", "{ckpt}"], 2, "no audio files to tag"),
    (["tag", "{dir_wav}", "-c", "{ckpt}"], 2, "no audio files to tag"),
    (["tag", "{wav}", "-c", "{lin}", "--events"], 2, "linear-head model, no framewise output"),
    (["tag", "{wav}", "-c", "{ckpt}", "--output", "{adir}"], 6, "--output {adir}: is a directory"),
    (["tag", "{wav}", "-c", "{ckpt}", "--output", "{tmp}/newdir/"], 6, "is a directory; give a file name"),
    (["tag", "{wav}", "-c", "{ckpt}", "--output", "{afile}/res.json"], 6, "{afile} is a file, not a directory"),
    (["tag", "{wav}", "-c", "{ckpt}", "--plot", "{afile}"], 6, "--plot {afile}: exists and is not a directory"),
    (["tag", "--stream", "-c", "{ckpt}", "{wav}"], 2, "give no PATH with it"),
    (["tag", "--stream", "radio", "-c", "{ckpt}"], 2, "--stream takes '-' (standard input) or 'mic[:DEVICE]'"),
    (["tag", "--stream", "-c", "{ckpt}", "--raw", "mp3"], 2, "--raw must be one of"),
    (["tag", "--stream", "-c", "{ckpt}", "--channels", "0"], 2, "--channels must be >= 1, got 0"),
    (["tag", "--stream", "-c", "{ckpt}", "--stream-hop", "0"], 2, "--stream-hop must be > 0"),
    (["tag", "--stream", "-c", "{ckpt}", "--lookahead", "-1"], 2, "--lookahead must be >= 0"),
    (["tag", "--stream", "-c", "{ckpt}", "--rate", "-8000", "--raw", "s16le"], 2, "--rate must be >= 1"),
    (["tag", "{wav}", "--model", "{tmp}/no_such_model"], 3, "model not found"),
    (["tag", "{wav}", "--model", "{adir}"], 3, "not an audiomamba model folder"),
    # per-file failures: the other files are tagged and written, exit 1, each failure named
    (["tag", "{wav}", "{corrupt_wav}", "-c", "{ckpt}", "-q"], 1, "corrupt.wav"),
    (["tag", "{wav}", "{missing_wav}", "-c", "{ckpt}", "-q"], 1, "missing.wav"),
    (["tag", "{wav}", "{nan_wav}", "-c", "{ckpt}", "-q", "-f", "json"], 1, "nan.wav"),
]
if not CUDA:
    TAG.append((["tag", "{wav}", "-c", "{ckpt}", "--device", "cuda"], 2, "--device cuda: CUDA is not available"))
    TAG.append((["tag", "{wav}", "-c", "{ckpt}", "--device", "auto", "--cuda-graph"], 2, "--cuda-graph needs a CUDA"))
TAG += [(["tag", "{wav}", "-c", "{%s}" % name], 3, fragment) for name, fragment in CHECKPOINTS]


@pytest.mark.parametrize("argv,code,fragment", TAG, ids=[" ".join(a[1:])[:60] for a, _, _ in TAG])
def test_tag(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


def test_tag_partial_failure_writes_the_rest_as_valid_json(F, capsys, tmp_path):
    out = tmp_path / "res.json"
    run_bad(capsys, F, ["tag", "{wav}", "{nan_wav}", "{corrupt_wav}", "-c", "{ckpt}", "-q", "-f", "json", "-o", str(out)],
            1, "2 of 3 file(s) failed")
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    assert [Path(d["file"]).name for d in data] == ["good.wav"]


@pytest.mark.parametrize("stdin,extra,code,fragment", [
    (b"garbage" * 50, [], 1, "stdin: not a WAV stream"),
    (b"", [], 1, "stdin: not a WAV stream"),
    (b"\x00\x01" * 50, ["--raw", "s16le"], 2, "raw s16le needs its sample rate"),
])
def test_tag_stream_of_bad_input(stdin, extra, code, fragment, F, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    err = run_bad(capsys, F, ["tag", "--stream", "-c", "{ckpt}", *extra], code, fragment)
    assert len([line for line in err.splitlines() if ERROR_LINE.match(line)]) == 1


def test_output_checked_before_any_tagging(F, capsys, monkeypatch):
    """--output in the way fails before the checkpoint is even loaded: no work is lost."""
    from audiomamba.inference import tagger

    monkeypatch.setattr(tagger.Tagger, "tag_files", lambda *a, **k: pytest.fail("tagged before checking --output"))
    run_bad(capsys, F, ["tag", "{wav}", "-c", "{ck_missing}", "--output", "{adir}"], 6, "is a directory")


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="no /dev/full device on this platform")
def test_tag_output_on_a_full_disk(F, capsys):
    """/dev/full: every write fails with ENOSPC, as on a full disk; the device itself is left alone."""
    run_bad(capsys, F, ["tag", "{wav}", "-c", "{ckpt}", "-q", "--output", "/dev/full"], 6,
            "--output /dev/full: cannot write (no space left on device)")
    assert Path("/dev/full").is_char_device()


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_tag_output_in_unwritable_folder(F, capsys):
    run_bad(capsys, F, ["tag", "{wav}", "-c", "{ckpt}", "--output", "{readonly}/res.json"], 6, "permission denied")


def test_300k_class_claim_is_refused_without_building_the_model(F, capsys, monkeypatch):
    """The claimed head (300000 x 384 x 2 x 3 floats, 2.7 GB) is never allocated: the model is built only on the
    meta device before the file is refused."""
    import audiomamba.checkpoint as ckpt

    devices = []
    real = ckpt.create_model

    def spy(*a, **k):
        devices.append(torch.empty(0).device.type)
        return real(*a, **k)

    monkeypatch.setattr(ckpt, "create_model", spy)
    run_bad(capsys, F, ["tag", "{wav}", "-c", "{ck_300k}"], 3, "300000")
    assert devices == ["meta"]


# ------------------------------------------------------------------------------------------------ train
TRAIN = [
    (["train", "--config", "{tmp}/nope.yaml"], 2, "config file not found"),
    (["train"], 2, "the following arguments are required: --config"),
    (["train", "--config", "{cfg_dir}"], 2, "is a directory, not a config file"),
    (["train", "--config", "{cfg_latin1}"], 2, "latin1.yaml:2: not UTF-8 text"),
    (["train", "--config", "{cfg_binary}"], 2, "not UTF-8 text"),
    (["train", "--config", "{cfg_bad_yaml}"], 2, "bad.yaml:"),
    (["train", "--config", "{cfg_tabs}"], 2, "tabs.yaml:2: not valid YAML"),
    (["train", "--config", "{cfg_list}"], 2, "a config is a mapping of sections"),
    (["train", "--config", "{cfg_scalar}"], 2, "a config is a mapping of sections"),
    (["train", "--config", "{cfg_section_scalar}"], 2, "train: expected a mapping"),
    (["train", "--config", "{cfg_unknown_key}"], 2, "unknown config key 'train.epoch'"),
    (["train", "--config", "{cfg_unknown_section}"], 2, "unknown config key 'trainer'"),
    (["train", "--config", "{cfg_no_root}"], 2, "data.root is required"),
    (["train", "--config", "{cfg_number_key}"], 2, "unknown config key '1'"),
    (["train", "--config", "{cfg}", "optim.betas=0.9"], 2, "optim.betas: expected a list, got 0.9"),
    (["train", "--config", "{cfg}", "model.name.x=1"], 2, "override 'model.name.x=1': name is not a section"),
    (["train", "--config", "{cfg}", "train.epochs="], 2, "train.epochs: expected an integer, got None"),
    (["train", "--config", "{cfg}", "train.eval_every_epochs=0"], 2, "train.eval_every_epochs must be >= 1, got 0"),
    (["train", "--config", "{cfg}", "optim.lr=-1"], 2, "optim.lr must be > 0"),
    (["train", "--config", "{cfg}", "optim.lr=0"], 2, "optim.lr must be > 0"),
    (["train", "--config", "{cfg}", "optim.lr=nan"], 2, "optim.lr: expected a finite number"),
    (["train", "--config", "{cfg}", "optim.lr=.inf"], 2, "optim.lr: expected a finite number"),
    (["train", "--config", "{cfg}", "optim.lr=fast"], 2, "optim.lr: expected a number, got 'fast'"),
    (["train", "--config", "{cfg}", "optim.betas=[0.9]"], 2, "optim.betas must be two numbers"),
    (["train", "--config", "{cfg}", "optim.betas=[0.9, 1.5]"], 2, "optim.betas[1] must be < 1.0"),
    (["train", "--config", "{cfg}", "optim.weight_decay=-0.1"], 2, "optim.weight_decay must be >= 0"),
    (["train", "--config", "{cfg}", "optim.grad_clip=0"], 2, "optim.grad_clip must be > 0"),
    (["train", "--config", "{cfg}", "train.batch_size=0"], 2, "train.batch_size must be >= 1"),
    (["train", "--config", "{cfg}", "train.epochs=ten"], 2, "train.epochs: expected an integer, got 'ten'"),
    (["train", "--config", "{cfg}", "train.epochs=2.5"], 2, "train.epochs: expected an integer"),
    (["train", "--config", "{cfg}", "train.log_every=0"], 2, "train.log_every must be >= 1"),
    (["train", "--config", "{cfg}", "train.ema_decay=1"], 2, "train.ema_decay must be < 1"),
    (["train", "--config", "{cfg}", "train.seed=-3"], 2, "train.seed must be >= 0"),
    (["train", "--config", "{cfg}", "augment.mixup_prob=2"], 2, "augment.mixup_prob must be <= 1"),
    (["train", "--config", "{cfg}", "data.clip_seconds=0"], 2, "data.clip_seconds must be > 0"),
    (["train", "--config", "{cfg}", "data.clip_seconds=1e-6"], 2, "data.clip_seconds=1e-06 is shorter than the model's"),
    (["train", "--config", "{cfg}", "data.eval_seconds=0.001"], 2, "data.eval_seconds=0.001 is shorter"),
    (["train", "--config", "{cfg}", "data.num_workers=-2"], 2, "data.num_workers must be >= 0"),
    (["train", "--config", "{cfg}", "train.threads=100000"], 2, "train.threads must be <= 1024"),
    (["train", "--config", "{cfg}", "data.labels={tmp}/none.csv"], 5, "data.labels {tmp}/none.csv: no such file"),
    (["train", "--config", "{cfg}", "data.val_fraction=1"], 2, "data.val_fraction must be < 1"),
    (["train", "--config", "{cfg}", "model.name=bogus"], 2, "model.name: 'bogus' is not a trainable model"),
    (["train", "--config", "{cfg}", "model.sample_rate=100"], 2, "model.sample_rate must be >= 1000"),
    (["train", "--config", "{cfg}", "model.head=mlp"], 2, "model.head: 'mlp' is not one of tscam, linear"),
    (["train", "--config", "{cfg}", "train.precision=fp8"], 2, "train.precision: 'fp8' is not one of"),
    (["train", "--config", "{cfg}", "train.device=banana"], 2, "train.device: 'banana' is not a device"),
    (["train", "--config", "{cfg}", "lr=3"], 2, "unknown config key 'lr'"),
    (["train", "--config", "{cfg}", "optim.lr"], 2, "must look like section.key=value"),
    (["train", "--config", "{cfg}", "optim.lr=[1,"], 2, "override 'optim.lr=[1,': the value is not valid YAML"),
    (["train", "--config", "{cfg}", "optim..lr=1"], 2, "is not a section.key name"),
    (["train", "--config", "{cfg}", "--cv-folds", "1,x"], 2, "--cv-folds takes comma-separated whole numbers"),
    (["train", "--config", "{cfg}", "--cv-folds", "0"], 2, "--cv-folds: 0 must be >= 1"),
    (["train", "--config", "{cfg}", "data.root={tmp}/no_data"], 5, "data.root {tmp}/no_data: no such file"),
    (["train", "--config", "{cfg}", "train.output_dir={afile}"], 6, "train.output_dir {afile}: exists and is not a directory"),
    (["train", "--config", "{cfg}", "model.init_checkpoint={tmp}/none.safetensors"], 3, "model.init_checkpoint"),
    (["train", "--config", "{cfg}", "model.init_checkpoint={ck_not_json}"], 3, "model.init_checkpoint: "),
    (["train", "--config", "{cfg}", "model.init_checkpoint={ck_payload}"], 3, "unpickling can run code"),
    (["train", "--config", "{cfg}", "model.pretrained_backbone={tmp}/none.pth"], 3, "model.pretrained_backbone"),
    (["train", "--config", "{cfg}", "model.pretrained_backbone={state_payload}"], 3, "unpickling can run code"),
    (["train", "--config", "{cfg}", "model.pretrained_backbone={cfg}"], 3, "not a checkpoint (neither safetensors"),
    (["train", "--config", "{cfg}", "model.pretrained_backbone={ck_random}"], 3, "model.pretrained_backbone"),
    (["train", "--config", "{cfg}", "data.labels={cfg}"], 5, "data.labels: "),
    (["train", "--config", "{cfg}", "--resume", "{tmp}/none.pt"], 3, "--resume {tmp}/none.pt: no such file"),
    (["train", "--config", "{cfg}", "--resume", "{adir}"], 3, "is a directory, not a file"),
    (["train", "--config", "{cfg}", "--resume", "{state_junk}"], 3, "not a readable training checkpoint"),
    (["train", "--config", "{cfg}", "--resume", "{state_text}"], 3, "not a readable training checkpoint"),
    (["train", "--config", "{cfg}", "--resume", "{state_truncated}"], 3, "not a readable training checkpoint"),
    (["train", "--config", "{cfg}", "--resume", "{state_payload}"], 3, "unpickling can run code"),
    (["train", "--config", "{cfg}", "--resume", "{state_plain}"], 3, "not an audiomamba training checkpoint"),
    (["train", "--config", "{cfg}", "--resume", "{ckpt}"], 3, "a model checkpoint, not a training state"),
    (["train", "--config", "{cfg}", "--resume", "{state_other_model}"], 3, "a audiomamba_micro checkpoint cannot resume"),
    (["train", "--config", "{cfg}", "--resume", "{state_no_optimizer}"], 3, "missing optimizer"),
    # data problems found when the data is opened (before the first step)
    (["train", "--config", "{cfg_bad_manifest}"], 5, "train.jsonl"),
    (["train", "--config", "{cfg_unknown_label}"], 5, "Kazoo solo"),
    (["train", "--config", "{cfg_m_dir_wav}"], 5, "train.jsonl:1: {m_dir_wav}/audio/dir.wav is a directory"),
    (["train", "--config", "{cfg_m_empty}"], 5, "train.jsonl: the split is empty"),
    (["train", "--config", "{cfg_m_path_int}"], 5, "train.jsonl:1: 'path' must be a non-empty string, got 5"),
    (["train", "--config", "{cfg_m_onset_after_offset}"], 5, "train.jsonl:1: event offset 0.1 is before its onset"),
    (["train", "--config", "{cfg_m_not_object}"], 5, "train.jsonl:1"),
]
if not CUDA:
    TRAIN.append((["train", "--config", "{cfg}", "train.device=cuda"], 2, "train.device cuda: CUDA is not available"))


@pytest.mark.parametrize("argv,code,fragment", TRAIN, ids=[" ".join(a[1:])[-60:] for a, _, _ in TRAIN])
def test_train(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


# ------------------------------------------------------------------------------------------------ evaluate
EVAL = [
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--batch-size", "0"], 2, "--batch-size must be >= 1"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--threshold", "1.5"], 2, "--threshold must be in [0, 1]"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--threshold", "nan"], 2, "--threshold must be a finite"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--tta-shifts", "0"], 2, "--tta-shifts must be >= 1"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--tta-spacing", "0"], 2, "--tta-spacing must be >= 1"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--min-input", "-0.5"], 2, "--min-input must be in [0, 300]"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--workers", "-1"], 2, "--workers must be in [0, "),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--seconds", "0"], 2, "--seconds must be > 0"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--device", "banana"], 2, "not a device"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--format", "parquet"], 2, "argument --format"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--cv", "a,b"], 2, "--cv takes comma-separated"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--cv", "1"], 2, "must contain {{fold}}"),
    (["evaluate", "--checkpoint", "{tmp}/f{{fold}}/{{split}}.safetensors", "--data", "{toy}", "--cv", "1"], 2,
     "the only {{...}} field is {{fold}}"),
    (["evaluate", "--checkpoint", "{toy_ckpt}"], 2, "the following arguments are required: --data"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{tmp}/no_data"], 5, "--data {tmp}/no_data: no such file"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--labels", "{tmp}/none.csv"], 5, "--labels"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--labels", "{cfg}"], 5,
     "--labels: {cfg}:2: expected columns index,mid,display_name"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--labels", "{cfg_binary}"], 5, "--labels: "),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--out", "{afile}"], 6, "--out {afile}: exists and is not"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{bad_manifest}", "--out", "{tmp}/ev1"], 5, "test.jsonl"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{unknown_label}", "--out", "{tmp}/ev2"], 5, "Kazoo solo"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{m_dir_wav}", "--out", "{tmp}/ev4"], 5, "is a directory"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{m_empty}", "--out", "{tmp}/ev4"], 5, "the split is empty"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{m_path_int}", "--out", "{tmp}/ev4"], 5, "test.jsonl:1: 'path'"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{m_not_object}", "--out", "{tmp}/ev4"], 5, "test.jsonl:1"),
    (["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--split", "nosuchsplit", "--out", "{tmp}/ev3"], 5,
     "nosuchsplit"),
]
if not CUDA:
    EVAL.append((["evaluate", "--checkpoint", "{toy_ckpt}", "--data", "{toy}", "--device", "cuda"], 2,
                 "--device cuda: CUDA is not available"))
EVAL += [(["evaluate", "--checkpoint", "{%s}" % n, "--data", "{toy}", "--out", "{tmp}/ev_ck"], 3, OPTION_FRAGMENT[n])
         for n in CHECKPOINT_SAMPLE]


@pytest.mark.parametrize("argv,code,fragment", EVAL, ids=[" ".join(a[1:])[-60:] for a, _, _ in EVAL])
def test_evaluate(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


def test_evaluate_that_fails_leaves_no_folder_beside_the_checkpoint(F, capsys, tmp_path):
    """Without --out the results go next to the checkpoint (eval_<split>); a run that fails on its data must not
    leave that folder behind (the shipped model's folder is inside the installed package)."""
    ck = tmp_path / "m" / "toy.safetensors"
    ck.parent.mkdir()
    ck.write_bytes(Path(F["toy_ckpt"]).read_bytes())
    run_bad(capsys, F, ["evaluate", "--checkpoint", str(ck), "--data", "{toy}", "--split", "nosuchsplit"], 5,
            "nosuchsplit")
    assert sorted(p.name for p in ck.parent.iterdir()) == ["toy.safetensors"]


# ------------------------------------------------------------------------------------------------ export
EXPORT = [
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--opset", "3"], 2, "--opset must be in [18, "),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--opset", "999"], 2, "--opset must be in [18, "),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--opset", "x"], 2, "argument --opset: invalid int value"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--seconds", "0"], 2, "--seconds must be > 0"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--seconds", "nan"], 2, "--seconds must be a finite number"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--min-input", "-1"], 2, "--min-input must be in [0, 300]"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--seconds", "1e9"], 2, "--seconds must be at most 3600"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--format", "tflite"], 2, "argument --format: invalid choice"),
    (["export", "-c", "{ckpt}", "--out", "{tmp}/m.onnx", "--layout", "diagonal"], 2, "argument --layout"),
    (["export", "-c", "{ckpt}"], 2, "the following arguments are required: --out"),
    (["export", "-c", "{ckpt}", "--out", "{adir}"], 6, "--out {adir}: is a directory"),
    (["export", "-c", "{ckpt}", "--out", "{afile}/m.onnx"], 6, "{afile} is a file, not a directory"),
]
EXPORT += [(["export", "-c", "{%s}" % n, "--out", "{tmp}/m.onnx"], 3, FRAGMENT[n]) for n in CHECKPOINT_SAMPLE]


@pytest.mark.parametrize("argv,code,fragment", EXPORT, ids=[" ".join(a[1:])[-60:] for a, _, _ in EXPORT])
def test_export(argv, code, fragment, F, capsys):
    pytest.importorskip("onnx")
    run_bad(capsys, F, argv, code, fragment)


# ------------------------------------------------------------------------------------------------ data
DATA = [
    (["data"], 2, "give a subcommand"),
    (["data", "mix"], 2, "argument SUBCOMMAND: invalid choice: 'mix'"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "0"], 2, "--clips must be >= 1, got 0"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "many"], 2, "argument --clips: invalid int value"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--duration", "0"], 2, "--duration must be > 0"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--duration", "nan"], 2, "--duration must be a finite"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--snr", "30,6"], 2, "--snr takes LOW,HIGH with LOW <= HIGH"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--snr", "a,b"], 2, "argument --snr: expected LOW,HIGH"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--events", "0,2"], 2, "--events takes whole numbers"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--events", "1.5,2"], 2, "--events takes whole numbers"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--splits", "0.5,0.5,0.5"], 2, "must sum to 1"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--splits", "1.2,-0.1,-0.1"], 2, "--splits must be in [0, 1]"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--splits", "1,0"], 2, "expected three fractions"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--sample-rate", "10"], 2, "--sample-rate must be in"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--jobs", "0"], 2, "--jobs must be >= 1"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--families", "nope"], 2, "--families: unknown family"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--no-builtin"], 2, "--no-builtin needs at least one"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--source-dir", "{tmp}/nowhere"], 5,
     "--source-dir {tmp}/nowhere: no such file or directory"),
    (["data", "soundscapes", "--out", "{tmp}/ds", "--clips", "4", "--source-dir", "{afile}"], 5, "is a file, not a directory"),
    (["data", "soundscapes", "--out", "{afile}", "--clips", "4"], 6, "--out {afile}: exists and is not a directory"),
    (["data", "soundscapes", "--out", "{full}", "--clips", "4"], 2, "folder is not empty; choose another or pass --overwrite"),
    (["data", "esc50-like", "--out", "{tmp}/e", "--clips", "-3"], 2, "--clips must be >= 1"),
    (["data", "bank", "--out", "{tmp}/b", "--quality", "2"], 2, "--quality must be in [0, 1]"),
    (["data", "bank", "--out", "{tmp}/b", "--max-seconds", "0"], 2, "--max-seconds must be > 0"),
    (["data", "bank", "--out", "{tmp}/b", "--clips", "train=0"], 2, "clips per split"),
    (["data", "bank", "--out", "{tmp}/b", "--clips", "holdout=5"], 2, "clips per split must name"),
    (["data", "bank", "--out", "{tmp}/b", "--clips", "train=lots"], 2, "expected SPLIT=COUNT pairs"),
    (["data", "sources", "--jobs", "0"], 2, "--jobs must be >= 1"),
    (["data", "pack", "--data", "{tmp}/nowhere", "--out", "{tmp}/p"], 5, "--data {tmp}/nowhere: no such file"),
    (["data", "pack", "--data", "{toy}", "--out", "{tmp}/p", "--shard-size", "0"], 2, "--shard-size must be >= 1"),
    (["data", "pack", "--data", "{toy}", "--out", "{tmp}/p", "--labels", "{tmp}/none.csv"], 5, "--labels"),
    (["data", "pack", "--data", "{toy}", "--out", "{afile}"], 6, "--out {afile}: exists and is not a directory"),
    (["data", "pack", "--data", "{bad_manifest}", "--out", "{tmp}/p2", "--splits", "train"], 5,
     "no split of 'train' could be packed"),
]


@pytest.mark.parametrize("argv,code,fragment", DATA, ids=[" ".join(a[1:])[-60:] for a, _, _ in DATA])
def test_data(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


def test_data_build_with_an_unreadable_source_writes_the_rest_and_exits_1(F, capsys, tmp_path):
    src = tmp_path / "sources"
    for label in ("Dog", "Cat"):
        for g in range(5):  # one source group per ESC-50 fold
            (src / label / f"g{g}").mkdir(parents=True)
            sf.write(src / label / f"g{g}" / "a.wav", (np.random.default_rng(g).standard_normal(TOY_SR) * 0.2)
                     .astype(np.float32), TOY_SR)
    (src / "Dog" / "g0" / "broken.wav").write_bytes(b"RIFFjunk")
    out = tmp_path / "esc"
    run_bad(capsys, F, ["data", "esc50-like", "--out", str(out), "--clips", "5", "--duration", "1", "--no-builtin",
                        "--source-dir", str(src), "--jobs", "1", "--sample-rate", str(TOY_SR), "-q"], 1,
            "1 unreadable source file(s) skipped")
    assert any(out.rglob("*.wav"))


# ------------------------------------------------------------------------------------------------ demo, models, convert
DEMO = [
    (["demo", "--model", "audiomamba_gigantic"], 2, "--model 'audiomamba_gigantic' is not a registered tagger"),
    (["demo", "--model", "vmamba_tiny_v0"], 2, "is not a registered tagger"),
    (["demo", "--seconds", "0"], 2, "--seconds must be > 0"),
    (["demo", "--seconds", "nan"], 2, "--seconds must be a finite number"),
    (["demo", "--seconds", "1e12"], 2, "--seconds must be in [0.1, 3600]"),
    (["demo", "--seconds", "0.001"], 2, "--seconds must be in [0.1, 3600]"),
    (["demo", "--layout", "diagonal"], 2, "argument --layout: invalid choice"),
    (["demo", "--imagenet", "{tmp}/none.pth"], 3, "--imagenet {tmp}/none.pth: no such file"),
    (["demo", "--imagenet", "{state_payload}"], 3, "unpickling can run code"),
    (["demo", "--imagenet", "{state_text}"], 3, "not a checkpoint"),
    (["demo", "--checkpoint", "{ckpt}", "--imagenet", "{tmp}/none.pth"], 2, "give --checkpoint or --imagenet, not both"),
    (["demo", "--out", "{afile}"], 6, "--out {afile}: exists and is not a directory"),
]
DEMO += [(["demo", "--checkpoint", "{%s}" % n, "--seconds", "1"], 3, OPTION_FRAGMENT[n]) for n in CHECKPOINT_SAMPLE]

MODELS = [
    (["models", "zzz*"], 2, "no model matches 'zzz*'"),
    (["models", "--pretrained", "zzz*"], 2, "no shipped tagger matches 'zzz*'"),
    (["models", "--sizes"], 2, "unrecognized arguments: --sizes"),
    (["models", "a", "b"], 2, "unrecognized arguments: b"),
]

CONVERT = [
    (["convert", "{tmp}/none.safetensors", "{tmp}/o.safetensors"], 3, "not found"),
    (["convert", "{ckpt}", "{full}"], 2, "exists; choose another path or pass --overwrite"),
    (["convert", "{ckpt}", "{afile}", "--overwrite"], 6, "DST {afile}: exists and is not a directory"),
    (["convert", "{ckpt}", "{ck_dir}"], 6, "DST {ck_dir}: is a directory"),
    (["convert", "{ckpt}", "{afile}/sub/o.safetensors"], 6, "{afile} is a file, not a directory"),
    (["convert", "{ckpt}", "{tmp}/o2", "--revision", "main"], 2, "revision and cache_dir apply to Hub repo ids"),
    (["convert", "{ckpt}"], 2, "the following arguments are required: dst"),
    (["convert", "{adir}", "{tmp}/o3.safetensors"], 3, "not an audiomamba model folder"),
]
CONVERT += [(["convert", "{%s}" % n, "{tmp}/conv_out"], 3, FRAGMENT[n]) for n in CHECKPOINT_SAMPLE if n != "ck_missing"]

TOP = [
    ([], 2, ""),
    (["bogus"], 2, "argument COMMAND: invalid choice: 'bogus'"),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("argv,code,fragment", DEMO + MODELS + CONVERT,
                         ids=[" ".join(a)[-60:] for a, _, _ in DEMO + MODELS + CONVERT])
def test_demo_models_convert(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


@pytest.mark.parametrize("argv,code,fragment", TOP[1:], ids=[" ".join(a) for a, _, _ in TOP[1:]])
def test_top_level(argv, code, fragment, F, capsys):
    run_bad(capsys, F, argv, code, fragment)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: audiomamba" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the central handler
def _patched_run(monkeypatch, exc: BaseException):
    import audiomamba.cli.models as models_cmd

    def boom(args):
        raise exc

    monkeypatch.setattr(models_cmd, "run", boom)


def test_a_bug_prints_the_traceback_and_says_so(monkeypatch, capsys):
    _patched_run(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(["models"]) == EXIT_BUG == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("audiomamba models: internal error: this is a bug in audiomamba")


def test_ctrl_c_is_130(monkeypatch, capsys):
    _patched_run(monkeypatch, KeyboardInterrupt())
    assert main(["models"]) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "audiomamba models: interrupted"


def test_os_errors_name_the_file(monkeypatch, capsys):
    import errno

    _patched_run(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/data/out.json"))
    assert main(["models"]) == 6
    assert capsys.readouterr().err.strip() == "audiomamba models: error: /data/out.json: no space left on device"


def test_out_of_memory_is_7(monkeypatch, capsys):
    _patched_run(monkeypatch, RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate "
                                           "memory: you tried to allocate 1099511627776 bytes"))
    assert main(["models"]) == 7
    err = capsys.readouterr().err
    assert err.startswith("audiomamba models: error: out of memory (") and err.count("\n") == 1


def test_missing_optional_dependency_names_the_extra(monkeypatch, capsys):
    e = ModuleNotFoundError("No module named 'onnxscript'")
    e.name = "onnxscript"
    _patched_run(monkeypatch, e)
    assert main(["models"]) == 2
    assert "pip install 'audiomamba[export]'" in capsys.readouterr().err


def test_multi_line_messages_become_one_line(monkeypatch, capsys):
    from audiomamba.errors import CheckpointError

    _patched_run(monkeypatch, CheckpointError("m.safetensors: weights do not match:\n\tMissing key(s): a,\n\tb"))
    assert main(["models"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Missing key(s): a, b" in err


def test_every_error_class_has_a_documented_code():
    import audiomamba.errors as E

    docs = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    classes = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.AudiomambaError)]
    assert len(classes) >= 10
    for cls in classes:
        assert f"`{cls.exit_code}`" in docs, cls
        assert cls.__name__ in docs, f"{cls.__name__} not in docs/errors.md"


# ------------------------------------------------------------------------------------------------ the console script
def test_console_script_refuses_a_damaged_checkpoint_in_one_line(F):
    script = Path(sys.executable).parent / "audiomamba"
    if not script.exists():
        pytest.skip("the audiomamba console script is not installed next to this Python")
    proc = subprocess.run([str(script), "tag", F["wav"], "-c", F["ck_300k"]], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("audiomamba tag: error: ") and "300000" in lines[0]
    assert proc.stdout == ""


def test_count(capsys):
    """The number of bad inputs in these tables (the issue's notes quote it)."""
    n = len(TAG) + len(TRAIN) + len(EVAL) + len(EXPORT) + len(DATA) + len(DEMO) + len(MODELS) + len(CONVERT) + len(TOP)
    assert n >= 250, n
