"""The Hugging Face Hub layout (audiomamba.hub): save_pretrained / from_pretrained on local folders and on a populated
Hugging Face cache read offline, conversion to and from the single-file checkpoint, the model card, push_to_hub.
Nothing here downloads: every Hub lookup runs with downloads off."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import audiomamba
from audiomamba import Tagger, hub
from audiomamba.checkpoint import read_meta
from audiomamba.errors import CheckpointError

from conftest import SR, noise

LABELS = ["Speech", "Dog", "Music"]


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()


@pytest.fixture(scope="module")
def folder(nano, tmp_path_factory):
    return hub.save_pretrained(nano, tmp_path_factory.mktemp("hub") / "nano", labels=LABELS,
                               provenance={"data": "toy", "validation": {"mAP": 0.41, "mAUC": 0.8, "step": 7}})


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def logits(model, wave):
    with torch.no_grad():
        return model(torch.from_numpy(wave)[None]).logits


# ---------------------------------------------------------------------- local folders
def test_folder_layout_and_round_trip(nano, folder):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config == read_meta(folder / "model.safetensors")  # the weights file alone is a checkpoint too
    assert config["model"] == {"name": "audiomamba_nano", "args": {"num_classes": 3, "layout": "native", "drop_path_rate": 0.1}}
    assert [lab["display_name"] for lab in config["labels"]] == LABELS
    assert config["multi_label"] is True and config["sample_rate"] == SR and config["frontend"]["hop_length"] == 320
    model = hub.from_pretrained(folder)
    assert not model.training and model.meta == config
    wave = noise(1.0)
    torch.testing.assert_close(logits(model, wave), logits(nano, wave))
    assert isinstance(hub.from_pretrained(str(folder / "model.safetensors")), torch.nn.Module)  # a single file too


def test_model_card(folder):
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "audiomamba" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "audio-classification" and "sound-event-detection" in meta["tags"]
    assert meta["metrics"] == ["mAP", "mAUC"]  # from the trainer's validation record; step is not a metric
    assert "| mAP | 0.4100 |" in card and "| 2 |  | Music |" in card and '"data": "toy"' in card
    huggingface_hub = pytest.importorskip("huggingface_hub")
    parsed = huggingface_hub.ModelCard.load(folder / "README.md")  # the Hub's own parser
    assert parsed.data.library_name == "audiomamba" and parsed.data.license == "apache-2.0"


def test_tagger_round_trip_keeps_labels_and_scores(tmp_path):
    torch.manual_seed(1)
    model = audiomamba.create_model("audiomamba_nano", num_classes=4, layout="native", head="linear")
    tagger = Tagger(model, labels=["a", "b", "c", "d"], multi_label=False)
    path = hub.save_pretrained(tagger, tmp_path / "t", metrics={"top1_accuracy": 0.5}, license="cc-by-4.0",
                               repo_id="someone/nano-linear")
    card = (path / "README.md").read_text()
    assert front_matter(card)["license"] == "cc-by-4.0" and "sound-event-detection" not in front_matter(card)["tags"]
    assert 'tagger_from_pretrained("someone/nano-linear")' in card and "# nano-linear" in card
    again = hub.tagger_from_pretrained(path, batch_size=2)
    assert isinstance(again, Tagger) and again.batch_size == 2
    assert again.labels == ["a", "b", "c", "d"] and again.multi_label is False
    assert again.model.meta["provenance"]["metrics"] == {"top1_accuracy": 0.5}
    wave = noise(0.7)
    a, b = tagger.tag(wave, sample_rate=SR).scores, again.tag(wave, sample_rate=SR).scores
    assert b.sum() == pytest.approx(1.0, abs=1e-5) and (a == b).all()


def test_convert_both_ways_keeps_everything(folder, tmp_path):
    single = hub.convert_checkpoint(folder, tmp_path / "nano.safetensors")
    assert read_meta(single) == json.loads((folder / "config.json").read_text())
    back = hub.convert_checkpoint(single, tmp_path / "again")
    assert (back / "config.json").read_text() == (folder / "config.json").read_text()
    assert (back / "README.md").read_text() == (folder / "README.md").read_text()
    for a, b in [(folder / "model.safetensors", single), (folder / "model.safetensors", back / "model.safetensors")]:
        ta, tb = load_file(str(a)), load_file(str(b))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_convert_keeps_half_precision_weights(nano, tmp_path):
    half = audiomamba.save_model(nano, tmp_path / "half.safetensors", labels=LABELS, dtype=torch.float16)
    folder = hub.convert_checkpoint(half, tmp_path / "half")
    back = hub.convert_checkpoint(folder, tmp_path / "back.safetensors")
    for path in (folder / "model.safetensors", back):
        ta, tb = load_file(str(half)), load_file(str(path))
        assert all(torch.equal(ta[k], tb[k]) and ta[k].dtype == tb[k].dtype for k in ta)
    assert {t.dtype for t in load_file(str(back)).values()} == {torch.float16, torch.int64}


def test_errors_name_the_file(folder, tmp_path):
    with pytest.raises(CheckpointError, match="model not found: ./nowhere"):
        hub.from_pretrained("./nowhere")
    with pytest.raises(CheckpointError, match="not found: runs/x/best.safetensors"):
        hub.from_pretrained("runs/x/best.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=f"missing {empty / 'config.json'} and {empty / 'model.safetensors'}"):
        hub.from_pretrained(empty)

    def variant(name: str, config=None, weights=None) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(config if config is not None else (folder / "config.json").read_text())
        (d / "model.safetensors").write_bytes(weights if weights is not None else (folder / "model.safetensors").read_bytes())
        return d

    d = variant("junk_config", config="{not json")
    with pytest.raises(CheckpointError, match=f"{d / 'config.json'}: not a readable JSON config"):
        hub.from_pretrained(d)
    d = variant("foreign", config=json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError, match=f"{d / 'config.json'}: not an audiomamba config"):
        hub.from_pretrained(d)
    config = json.loads((folder / "config.json").read_text())
    d = variant("future", config=json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="config.json: unsupported config format_version 99"):
        hub.from_pretrained(d)
    d = variant("unknown", config=json.dumps({**config, "model": {"name": "audiomamba_huge", "args": {}}}))
    with pytest.raises(CheckpointError, match="config.json: cannot build model 'audiomamba_huge'"):
        hub.from_pretrained(d)
    d = variant("other_size", config=json.dumps({**config, "model": {"name": "audiomamba_nano", "args": {"num_classes": 5}}}))
    with pytest.raises(CheckpointError, match=f"{d / 'model.safetensors'}: weights do not match"):
        hub.from_pretrained(d)
    d = variant("junk_weights", weights=b"not safetensors")
    with pytest.raises(CheckpointError, match=f"{d / 'model.safetensors'}: not a readable safetensors file"):
        hub.from_pretrained(d)
    with pytest.raises(ValueError, match="revision and cache_dir apply to Hub repo ids"):
        hub.from_pretrained(folder, revision="main")


def test_shipped_taggers_by_name(folder, tmp_path, monkeypatch):
    from audiomamba.models.pretrained import DEFAULT_TAGGER, list_pretrained, pretrained_path

    assert DEFAULT_TAGGER in list_pretrained()
    model = hub.from_pretrained(DEFAULT_TAGGER)  # no Hub lookup: the file inside the package
    assert model.meta == read_meta(pretrained_path(DEFAULT_TAGGER)) and not model.training
    assert hub.resolve_files(DEFAULT_TAGGER) == (None, pretrained_path(DEFAULT_TAGGER))
    with pytest.raises(ValueError, match="not to a tagger shipped with the package"):
        hub.from_pretrained(DEFAULT_TAGGER, revision="main")
    hub.save_pretrained(hub.from_pretrained(folder), tmp_path / DEFAULT_TAGGER, labels=LABELS)
    monkeypatch.chdir(tmp_path)  # a local folder of that name comes first
    assert [lab["display_name"] for lab in hub.from_pretrained(DEFAULT_TAGGER).meta["labels"]] == LABELS


def test_refuses_pickles_and_models_without_config(tmp_path):
    plain = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no .config"):
        hub.save_pretrained(plain, tmp_path / "p")
    d = tmp_path / "pickle"
    d.mkdir()
    torch.save({"w": torch.zeros(2)}, d / "pytorch_model.bin")  # the Hub's other weight format is never read
    with pytest.raises(CheckpointError, match="missing .*config.json and .*model.safetensors"):
        hub.from_pretrained(d)


# ---------------------------------------------------------------------- the Hugging Face cache, offline
def populate_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> None:
    """Lay ``folder``'s files out as huggingface_hub's cache does: blobs named by content hash, a snapshot per commit
    linking to them, and refs/<branch or tag> holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in folder.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture()
def hf_cache(folder, tmp_path, monkeypatch):
    """A cache holding org/nano at two commits: main (3 labels) and tag v1 (other labels)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # belt and braces: never the network
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    populate_cache(cache, "org/nano", folder, "a" * 40)
    v1 = tmp_path / "v1"
    model = hub.from_pretrained(folder)
    hub.save_pretrained(model, v1, labels=["Cat", "Bird", "Rain"])
    populate_cache(cache, "org/nano", v1, "b" * 40, refs=("v1",))
    info = huggingface_hub.scan_cache_dir(cache)  # the layout is what huggingface_hub itself reads
    assert not info.warnings and {r.commit_hash for repo in info.repos for r in repo.revisions} == {"a" * 40, "b" * 40}
    return cache


def test_repo_ids_resolve_in_the_cache_offline(hf_cache):
    main = hub.from_pretrained("org/nano", cache_dir=hf_cache, local_files_only=True)
    assert [lab["display_name"] for lab in main.meta["labels"]] == LABELS
    tagged = hub.from_pretrained("org/nano", revision="v1", cache_dir=hf_cache)
    assert [lab["display_name"] for lab in tagged.meta["labels"]] == ["Cat", "Bird", "Rain"]
    pinned = hub.tagger_from_pretrained("org/nano", revision="b" * 40, cache_dir=hf_cache)
    assert pinned.labels == ["Cat", "Bird", "Rain"]
    config, weights = hub.resolve_files("org/nano", cache_dir=hf_cache)
    assert config.parent.name == weights.parent.name == "a" * 40 and weights.name == "model.safetensors"


def test_missing_repo_or_revision_offline_is_a_checkpoint_error(hf_cache):
    with pytest.raises(CheckpointError, match=r"org/other \(revision main\): config.json is not in the Hugging Face cache"):
        hub.from_pretrained("org/other", cache_dir=hf_cache)
    with pytest.raises(CheckpointError, match=r"org/nano \(revision v2\): config.json .*downloads are off"):
        hub.from_pretrained("org/nano", revision="v2", cache_dir=hf_cache, local_files_only=True)
    half = hf_cache / "models--org--nano" / "snapshots" / ("a" * 40) / "model.safetensors"
    half.unlink()  # an interrupted download: the config is there, the weights are not
    with pytest.raises(CheckpointError, match=rf"org/nano \(revision main, commit {'a' * 40}\): model.safetensors is not in"):
        hub.from_pretrained("org/nano", cache_dir=hf_cache)


def test_hf_hub_offline_and_hf_home_from_the_environment(hf_cache, nano):
    """What a user does: HF_HOME points at the cache, HF_HUB_OFFLINE=1, and a repo id (read in a fresh process, since
    huggingface_hub reads its environment when imported)."""
    code = (
        "import sys, torch; from audiomamba.hub import from_pretrained; m = from_pretrained('org/nano'); "
        "print([l['display_name'] for l in m.meta['labels']]); "
        "from audiomamba.hub import from_pretrained as f; f('org/absent')"
    )
    env = {**os.environ, "HF_HOME": str(hf_cache.parent), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "['Speech', 'Dog', 'Music']" in proc.stdout
    assert "CheckpointError: org/absent (revision main): config.json is not in the Hugging Face cache" in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr


# ---------------------------------------------------------------------- sharing
def test_push_to_hub_uploads_the_saved_folder(nano, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)

        def upload_folder(self, repo_id, folder_path, **kw):
            files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
            calls["upload"] = (repo_id, files, kw)
            return "commit-info"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert hub.push_to_hub(nano, "me/nano", private=True, token="t0k", labels=LABELS, revision="dev") == "commit-info"
    assert calls["token"] == "t0k" and calls["create"] == ("me/nano", {"private": True, "exist_ok": True, "repo_type": "model"})
    repo_id, files, kw = calls["upload"]
    assert repo_id == "me/nano" and sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert kw["revision"] == "dev" and b'tagger_from_pretrained("me/nano")' in files["README.md"]
    assert [lab["display_name"] for lab in json.loads(files["config.json"])["labels"]] == LABELS
