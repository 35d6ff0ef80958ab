"""The networks on ONNX Runtime, for the CPU, with their weights read from the shared segment.

Why: on the CPU, ONNX Runtime runs these graphs 1.4-1.7x faster than eager torch on the same
cores (it fuses each batch norm and activation into its convolution; ``bench/peers.py``), and
as fast as OpenVINO did here. The graphs are our own torch wrappers (``nets``) exported once with
``torch.onnx.export`` and cached beside the converted weights, *without* weights: every
initializer is an external placeholder named by its state-dict key, and the session is given the
bound tensors (zero-copy views of the segment) through ``add_external_initializers``. A restore
copies nothing from the segment and, in the same engine, reads no file (the adapter keeps the
graphs); a new engine reads the 0.4 MB of graphs, or exports them again from the segment's tensors.
ONNX Runtime keeps only its own fused, re-laid-out copies while the session lives (dropped on
offload).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers
from torch import nn

from .model import PPOCRModule
from .nets import ClsUpsideDown, DetProbability, RecBest

log = logging.getLogger("dsocr.engine")

OPSET = 17
SEGMENT = "dsocr-segment"  # the placeholders' location: never read, every one is given at session start

# part -> (wrapper, example input, dynamic axes, output names)
_PARTS = {
    "det": (DetProbability, (1, 3, 64, 64), {"x": {2: "h", 3: "w"}, "prob": {0: "ph", 1: "pw"}}, ["prob"]),
    "rec": (
        RecBest,
        (1, 3, 48, 320),
        {"x": {0: "n", 3: "w"}, "p": {0: "n", 1: "t"}, "k": {0: "n", 1: "t"}},
        ["p", "k"],
    ),
    "cls": (ClsUpsideDown, (1, 3, 48, 192), {"x": {0: "n"}, "up": {0: "n"}}, ["up"]),
}


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fingerprint(wrapper: nn.Module) -> str:
    """Changes when anything that shapes the exported graph does: versions, names, shapes."""
    digest = hashlib.sha256(f"{torch.__version__} {transformers.__version__} {onnx.__version__} {OPSET}".encode())
    for name, tensor in wrapper.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
    return digest.hexdigest()[:16]


def _externalize(model: onnx.ModelProto, names: set[str]) -> None:
    """Replace the data of the initializers named in ``names`` by placeholders (name, shape, type)."""
    for tensor in model.graph.initializer:
        if tensor.name not in names:
            continue  # a constant of the export itself: stays in the graph
        length = (
            int(np.prod(tensor.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        )
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            tensor.ClearField(field)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", SEGMENT), ("offset", "0"), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value


def export(wrapper: nn.Module, part: str) -> bytes:
    """The weightless ONNX graph of ``wrapper`` (one of ``_PARTS``)."""
    _, shape, axes, outputs = _PARTS[part]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            wrapper,
            (torch.zeros(shape),),
            buffer,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, names kept
            input_names=["x"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            # PRESERVE (with the module in eval mode) keeps each batch norm as a node that reads
            # the bound tensors; EVAL would fold it into new, unnamed copies of the weights
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    _externalize(model, set(wrapper.state_dict()))
    return model.SerializeToString()


def _valid(data: bytes, wrapper: nn.Module) -> bool:
    """A graph file that parses and asks only for tensors the wrapper has (not a torn write)."""
    try:
        graph = onnx.load_from_string(data).graph
    except Exception:
        return False
    wanted = {t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    return bool(wanted) and wanted <= set(wrapper.state_dict())


def cached_graph(wrapper: nn.Module, part: str, folder: Path) -> bytes:
    """``export(wrapper, part)``, from ``folder`` when a valid copy is there, else written there."""
    path = folder / f"{part}-{_fingerprint(wrapper)}.onnx"
    if path.is_file() and _valid(data := path.read_bytes(), wrapper):
        return data
    data = export(wrapper, part)
    try:
        _write(path, data)
    except OSError as exc:  # a full or read-only cache: this engine runs, the next exports again
        log.warning("could not cache the %s graph in %s: %s", part, folder, exc)
    return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # readers see no file or the whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def wrappers(module: PPOCRModule) -> dict[str, nn.Module]:
    return {part: wrapper_type(module) for part, (wrapper_type, *_rest) in _PARTS.items()}


def graphs(module: PPOCRModule, folder: Path) -> dict[str, bytes]:
    """The three weightless graphs, exported on first use and cached in ``folder``."""
    return {part: cached_graph(wrapper, part, folder) for part, wrapper in wrappers(module).items()}


@functools.cache
def _shared_arena() -> None:
    """One CPU arena for the three sessions of this process, grown by what is asked (not to the next
    power of two). Registered once: ONNX Runtime's environment lives as long as the process."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # kSameAsRequested


class _Session:
    """One network's session and the segment views it was given (they must outlive it)."""

    def __init__(self, wrapper: nn.Module, graph: bytes, threads: int, spinning: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # An arena: without one every large buffer is mapped afresh and faulted in (8% slower pages
        # here). It is shared by the three sessions and emptied after each page (``release``), so
        # an engine that read ten pages holds what one that read none does (1.1 GB against 0.55
        # with an arena per session, kept).
        _shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
        options.log_severity_level = 3
        # Workers that spin between operators take the core from whatever shares it, and were no
        # faster even alone (bench/peers.py's 8 pages in one process, alternating: 6.2-7.3 s
        # spinning, 5.8-6.8 s not)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        state = wrapper.state_dict()
        names = [
            t.name
            for t in onnx.load_from_string(graph).graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
        ]
        self.arrays = [state[name].detach().numpy() for name in names]  # views of the segment
        self.values = [ort.OrtValue.ortvalue_from_numpy(array) for array in self.arrays]
        options.add_external_initializers(names, self.values)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def run(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"x": np.ascontiguousarray(pixels, dtype=np.float32)})


class OrtNets:
    """``nets.Nets`` on ONNX Runtime's CPU provider, ``threads`` intra-op threads per call."""

    backend = "onnxruntime"

    def __init__(self, module: PPOCRModule, graphs: dict[str, bytes], threads: int, spinning: bool = False) -> None:
        self.characters = module.characters
        self.sessions = {
            part: _Session(wrapper, graphs[part], threads, spinning) for part, wrapper in wrappers(module).items()
        }

    def det(self, pixels: np.ndarray) -> np.ndarray:
        return self.sessions["det"].run(pixels)[0]

    def rec(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probability, best = self.sessions["rec"].run(pixels)
        return probability, best

    def cls(self, pixels: np.ndarray) -> np.ndarray:
        return self.sessions["cls"].run(pixels)[0]

    def release(self) -> None:
        """Give the arena's free memory back: ONNX Runtime shrinks an arena only at the end of a run
        that asks, so a one-line classifier run (about a millisecond) asks for it."""
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.sessions["cls"].session.run(None, {"x": np.zeros((1, 3, 48, 192), np.float32)}, options)
