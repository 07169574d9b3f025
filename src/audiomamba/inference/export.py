"""Export to ONNX and TorchScript: the whole pipeline, waveform in, scores out.

The caller's model is never changed: :class:`ExportableTagger` wraps a copy of it, and the layout to export is
passed to the copy's forward.  Two pieces are swapped for export-friendly equivalents, with the same weights and
the same results:

- the front end's ``torch.stft`` becomes ``LogMel(cfg, stft="conv")`` (:class:`~audiomamba.models.features.LogMel`):
  reflect padding and a ``conv1d`` whose kernels are the Hann-windowed DFT basis (cos and -sin rows), stride =
  hop; power, mel matrix and dB as before.  Every exporter and runtime has conv1d; not all have STFT.
- the selective scan becomes :func:`audiomamba.ops.scan_blocked.selective_scan_blocked`, a loop-free, data-independent scan (the chunked
  torch scan decides at run time, from the data, whether to split a chunk; a trace would freeze those
  decisions).  It solves ``h_t = a_t h_{t-1} + b_t`` hierarchically: blocks of 4 steps in closed form
  (``h = exp(E) * cumsum(exp(-E) * b)``), then the same recurrence over the blocks' end states, recursively,
  then each block adds its decayed incoming state.  The log-decay of one step (or one block, at the upper
  levels) is clamped at -15 nats, so ``exp(-E) <= e^60`` never overflows float32; the clamp changes a state
  contribution of at most ``e^-15 ~ 3e-7`` of its size.  It is registered as the scan backend "blocked",
  which ``backend="auto"`` picks only inside :func:`export_mode`.

The exported graph has a fixed input length (``seconds``) and a dynamic batch.  A fold-layout export longer
than 10.24 s holds the model's own windows (:mod:`audiomamba.inference.pieces`), planned from the fixed length.
A native-layout export shorter than the model's short-input length (2.5 s for the built-in models:
:func:`~audiomamba.inference.pieces.model_min_input_s`) centres its input in silence that long and cuts the
framewise output back, as :class:`~audiomamba.inference.Tagger` does, so the graph's outputs are what
``audiomamba tag`` gives for a clip of that length.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.errors import ExportError
from audiomamba.inference.pieces import model_centre_padding, model_min_input_s, own_frames
from audiomamba.models.features import LogMel
from audiomamba.models.heads import logits_to_scores
from audiomamba.ops import export_mode
from audiomamba.ops.scan_blocked import selective_scan_blocked  # noqa: F401  (re-exported)

__all__ = [
    "ExportError",
    "ConvLogMel",
    "ExportableTagger",
    "selective_scan_blocked",
    "export_mode",
    "export_onnx",
    "export_torchscript",
]


# ---------------------------------------------------------------------- front end and wrapper
def ConvLogMel(frontend: LogMel) -> LogMel:
    """The export form of ``frontend``: ``LogMel(frontend.cfg, stft="conv")``, on the same device.  (A function
    under the name of the former class, so that ``ConvLogMel(model.frontend)`` keeps working.)"""
    return LogMel(frontend.cfg, stft="conv").to(frontend.mel_fb.device)


class ExportableTagger(nn.Module):
    """Waveform ``(B, samples)`` -> ``scores (B, C)``, ``framewise (B, frames, C)`` probabilities (tscam
    head only) and ``embedding (B, D)``, with the export-friendly front end.  Scores are sigmoids when
    ``multi_label`` else softmax over classes.

    It holds a copy of ``model`` in eval mode (``self.model``; the caller's model is left as it is) and runs it in
    ``layout`` (None: the model's own).  The copy keeps its ``torch.stft`` front end, so :func:`reference_outputs`
    of ``self.model`` in ``self.layout``, with ``self.pad``, is what the export is checked against.

    ``samples``: the fixed input length of the export.  In native layout, an input shorter than ``min_input_s``
    (None: :func:`~audiomamba.inference.pieces.model_min_input_s`; 0: never) is centred in silence that long
    (``self.pad``: samples before and after) and its framewise output cut back to its own frames, as the
    :class:`~audiomamba.inference.Tagger` does.
    """

    def __init__(self, model: nn.Module, multi_label: bool = True, layout: str | None = None,
                 samples: int | None = None, min_input_s: float | None = None) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.layout = model.layout if layout is None else layout
        self.frontend = ConvLogMel(self.model.frontend)
        self.multi_label = multi_label
        self.pad = export_padding(model, self.layout, samples, min_input_s)
        self.samples = samples
        self.eval()  # the whole wrapper: an inference graph (the exporter warns about a module in training mode)

    def forward(self, wave: torch.Tensor):
        m = self.model
        if any(self.pad):
            if wave.shape[-1] != self.samples:  # the padding was planned for the export's one input length
                raise ValueError(f"this wrapper centres inputs of {self.samples} samples, got {wave.shape[-1]}")
            wave = F.pad(wave, self.pad)
        out = m.forward_spectrogram(m.normalise(self.frontend(wave)), self.layout)
        scores = logits_to_scores(out.logits, self.multi_label)
        if out.framewise_logits is None:
            return scores, out.embedding
        fw = out.framewise_logits
        if any(self.pad):
            fw = fw[:, own_frames(m, self.pad[0], self.samples)]
        return scores, logits_to_scores(fw, self.multi_label), out.embedding

    def output_names(self) -> list[str]:
        tscam = getattr(self.model, "head_type", "tscam") == "tscam"
        return ["scores", "framewise", "embedding"] if tscam else ["scores", "embedding"]


def export_padding(model: nn.Module, layout: str, samples: int | None,
                   min_input_s: float | None = None) -> tuple[int, int]:
    """Samples of silence before and after an exported input of ``samples`` samples in ``layout``: the
    :class:`~audiomamba.inference.Tagger`'s centring of short inputs (native layout only; ``min_input_s`` None:
    the model's default, 0: none)."""
    if samples is None or layout != "native":
        return 0, 0
    if min_input_s is None:
        min_input_s = model_min_input_s(model)
    if not min_input_s >= 0:
        raise ValueError(f"min_input_s must be >= 0, got {min_input_s}")
    return model_centre_padding(model, samples, int(round(min_input_s * model.sample_rate)))


def _example(model: nn.Module, seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    n = int(round(seconds * model.sample_rate))
    if n < model.frontend.min_samples:
        raise ValueError(f"seconds={seconds} is shorter than the front end's minimum ({model.frontend.min_samples} samples)")
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, n, generator=g)


def reference_outputs(model: nn.Module, wave: torch.Tensor, multi_label: bool = True, layout: str | None = None,
                      pad: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """PyTorch outputs of the model as it is (torch.stft front end, the usual scan backends) in ``layout`` (None:
    the model's own), for comparison; ``pad``: samples of silence around ``wave`` (:func:`export_padding`), the
    framewise output cut back to ``wave``'s own frames."""
    with torch.inference_mode():
        out = model(F.pad(wave, pad) if any(pad) else wave, layout=layout)
    res = [logits_to_scores(out.logits, multi_label)]
    if out.framewise_logits is not None:
        fw = out.framewise_logits[:, own_frames(model, pad[0], wave.shape[1])]
        res.append(logits_to_scores(fw, multi_label))
    res.append(out.embedding)
    return [r.float().cpu().numpy() for r in res]


def _meta(model: nn.Module) -> dict[str, Any]:
    return getattr(model, "meta", None) or {}


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    seconds: float = 10.0,
    layout: str | None = None,
    opset: int = 18,
    verify: bool = True,
    verify_wave: torch.Tensor | None = None,
    atol: float = 1e-3,
    min_input_s: float | None = None,
) -> str:
    """Write ``model`` (from :func:`audiomamba.load`) as ONNX; with ``verify``, run it in onnxruntime on
    ``verify_wave`` (default: a noise clip) and compare with the PyTorch model (max abs score difference
    must be <= ``atol``).  ``min_input_s``: see :class:`ExportableTagger`.  Returns a one-line report."""
    import onnx  # noqa: F401  (clear ImportError when the extra is not installed)

    meta = _meta(model)
    multi_label = bool(meta.get("multi_label", True))
    example = _example(model, seconds, batch=2)  # batch 2: torch.export specialises a size-1 dimension to 1
    wrapper = ExportableTagger(model, multi_label, layout, example.shape[1], min_input_s).cpu().float()
    model = wrapper.model  # the copy: on the CPU in float32, the caller's model untouched
    names = wrapper.output_names()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with export_mode(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["waveform"],
            output_names=names,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
            opset_version=opset,
            dynamo=True,  # torch.export: shapes other than the batch are static ints, so no traced shape arithmetic
            verbose=False,
        )
    _add_onnx_metadata(path, model, meta, example.shape[1], wrapper.pad)
    report = (f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {example.shape[1]} samples at {model.sample_rate} Hz, "
              f"layout {wrapper.layout}{_padding_note(example.shape[1], wrapper.pad, model.sample_rate)}, {time.time() - t0:.1f} s)")
    if verify:
        wave = verify_wave if verify_wave is not None else example
        diff = verify_onnx(path, model, wave, multi_label, layout=wrapper.layout, pad=wrapper.pad)
        if diff["scores"] > atol:
            raise ExportError(f"{path}: onnxruntime scores differ from PyTorch by {diff['scores']:.2e} > {atol}")
        report += "; onnxruntime vs PyTorch max |diff|: " + ", ".join(f"{k} {v:.1e}" for k, v in diff.items())
    return report


def _padding_note(samples: int, pad: tuple[int, int], sample_rate: int) -> str:
    return f", centred in {(samples + sum(pad)) / sample_rate:g} s of input" if any(pad) else ""


def _add_onnx_metadata(path: Path, model: nn.Module, meta: dict, samples: int, pad: tuple[int, int] = (0, 0)) -> None:
    import onnx

    proto = onnx.load(str(path))
    info = {
        "labels": json.dumps([lab.get("display_name") for lab in meta.get("labels", [])]),
        "multi_label": str(bool(meta.get("multi_label", True))).lower(),
        "sample_rate": str(model.sample_rate),
        "num_samples": str(samples),
        "padding_samples": json.dumps(list(pad)),  # silence the graph puts before and after its input
        "frame_rate": str(model.sample_rate / model.frontend.cfg.hop_length),
        "model": json.dumps(meta.get("model", getattr(model, "config", {}))),
    }
    for k, v in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))


def verify_onnx(
    path: str | os.PathLike, model: nn.Module, wave: torch.Tensor, multi_label: bool = True, layout: str | None = None,
    pad: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Max abs differences between onnxruntime and the PyTorch model (in ``layout``; None: its own) on ``wave``
    (B, samples); ``pad`` (None: what the file's metadata says): the graph's centring of short inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if pad is None:
        pad = tuple(json.loads(sess.get_modelmeta().custom_metadata_map.get("padding_samples", "[0, 0]")))
    got = sess.run(None, {"waveform": wave.float().numpy()})
    want = reference_outputs(model, wave.to(next(model.parameters()).device), multi_label, layout, pad)
    names = [o.name for o in sess.get_outputs()]
    return {n: float(np.abs(g - w).max()) for n, g, w in zip(names, got, want)}


def export_torchscript(
    model: nn.Module, path: str | os.PathLike, seconds: float = 10.0, layout: str | None = None, verify: bool = True,
    atol: float = 1e-3, min_input_s: float | None = None,
) -> str:
    """Write a traced TorchScript module (``torch.jit.load`` it; same inputs/outputs as the ONNX model;
    ``min_input_s``: see :class:`ExportableTagger`)."""
    meta = _meta(model)
    multi_label = bool(meta.get("multi_label", True))
    example = _example(model, seconds)
    wrapper = ExportableTagger(model, multi_label, layout, example.shape[1], min_input_s).cpu().float()
    model = wrapper.model  # the copy: on the CPU in float32, the caller's model untouched
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with export_mode(), torch.no_grad():
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    extra = {"audiomamba.json": json.dumps({**meta, "num_samples": example.shape[1],
                                            "padding_samples": list(wrapper.pad)})}
    traced.save(str(path), _extra_files=extra)
    report = (f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {example.shape[1]} samples"
              f"{_padding_note(example.shape[1], wrapper.pad, model.sample_rate)})")
    if verify:
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            got = [t.numpy() for t in loaded(example)]
        want = reference_outputs(model, example, multi_label, wrapper.layout, wrapper.pad)
        diff = float(np.abs(got[0] - want[0]).max())
        if diff > atol:
            raise ExportError(f"{path}: TorchScript scores differ from PyTorch by {diff:.2e} > {atol}")
        report += f"; reloaded vs PyTorch max |score diff| {diff:.1e}"
    return report
