r"""``pyro-dgm compress`` and ``pyro-dgm decompress``: a fitted run as a lossless codec.

.. code-block:: console

    $ pyro-dgm fit --data digits --model pixelcnn --out runs/pixelcnn
    $ pyro-dgm compress runs/pixelcnn images.npy images.pdgm
    $ pyro-dgm decompress runs/pixelcnn images.pdgm restored.npy

``INPUT`` of ``compress`` is an ``.npy`` of integer levels of shape
:math:`(N, *\text{event shape})` (digits: :math:`(N, 1, 8, 8)` in
:math:`\{0, \dots, 16\}`); the file written holds about :math:`-\log_2 P(x)` bits
(exact models: PixelCNN, WaveNet) or :math:`-\mathrm{ELBO}(x) / \log 2` bits plus the
initial bits (a VAE, by bits-back coding), and a header with the model's fingerprint,
so that decompressing with another run is refused (:mod:`pyro_dgm.compression`). A
conditional run codes given the labels (``--labels``, an ``.npy`` of class indices),
and decoding needs the same labels. Outputs are written atomically; an existing output
is replaced only with ``--overwrite``.

:func:`code_length` is what ``pyro-dgm evaluate`` reports beside the bits/dim: the
bits per dimension actually written for the evaluated points.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import compression
from .errors import report_error
from .runs import load_run, save_with

__all__ = [
    "add_compress_parsers",
    "code_length",
    "compress_command",
    "decompress_command",
    "run_compress",
    "run_decompress",
]


def add_compress_parsers(subparsers: Any) -> None:
    """Add the ``compress`` and ``decompress`` commands to the ``pyro-dgm`` parsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> add_compress_parsers(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["compress", "runs/p", "x.npy", "x.pdgm"]).output
        PosixPath('x.pdgm')
    """
    for name, verb, input_is, output_is in [
        ("compress", "compress", "an .npy of integer levels, (N, *event shape)", "the codes"),
        ("decompress", "decompress", "a file written by pyro-dgm compress", "an .npy"),
    ]:
        parser = subparsers.add_parser(
            name,
            help=f"{verb} integer data with a fitted run's model (lossless)",
            description=(
                f"{verb.capitalize()} INPUT into OUTPUT with the model of RUN_DIR (a run of "
                "pyro-dgm fit on discrete data: pixelcnn, wavenet, vae). Exact models write "
                "about -log2 p(x) bits, a VAE about -ELBO/log 2 bits (bits-back coding). "
                "Needs the entropy coders: pip install pyro-dgm[compress]."
            ),
        )
        parser.add_argument("run_dir", type=Path, help="a folder written by pyro-dgm fit")
        parser.add_argument("input", type=Path, help=input_is)
        parser.add_argument("output", type=Path, help=output_is)
        parser.add_argument(
            "--labels",
            type=Path,
            default=None,
            help="a conditional run's class labels, an .npy of N integers (the same labels "
            "to decompress)",
        )
        parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
        parser.add_argument("--threads", type=int, default=None, help="torch threads")
        parser.set_defaults(handler=compress_command if name == "compress" else decompress_command)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what}: {path} is not a file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"{what}: {path} is not an .npy array numpy can read without pickle ({error})"
        ) from error


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ValueError(f"output: {path} exists; pass --overwrite to replace it")
    if path.exists() and not path.is_file():
        raise ValueError(f"output: {path} exists and is not a file")
    if not path.parent.is_dir():
        raise ValueError(f"output: the folder {path.parent} does not exist")


def _context(run: Any, labels_file: Path | None, count: int | None) -> Tensor | None:
    """The one-hot contexts of a conditional run from ``--labels`` (``None`` for an
    unconditional run, which refuses labels)."""
    if not run.config.conditional:
        if labels_file is not None:
            raise ValueError("--labels: the run is unconditional (p(x)); it codes without labels")
        return None
    if labels_file is None:
        raise ValueError(
            "--labels: the run is conditional (p(x | label)); give the class labels of the "
            "data as an .npy of integers"
        )
    labels = _load_npy(labels_file, "--labels")
    num_classes = run.data.context_shape[0]
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"--labels: expected a 1-D array of integer class labels, got shape "
            f"{labels.shape} and dtype {labels.dtype}"
        )
    if count is not None and len(labels) != count:
        raise ValueError(
            f"--labels: expected {count} labels (one per data point), got {len(labels)}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"--labels: expected classes in {{0, ..., {num_classes - 1}}}, got "
            f"{sorted(set(labels[(labels < 0) | (labels >= num_classes)].tolist()))[:8]}"
        )
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), num_classes)
    return one_hot.to(run.data.train_context.dtype)


def _codec_run(run_dir: Path) -> Any:
    run = load_run(run_dir)
    if run.data.num_levels is None:
        raise ValueError(
            f"run_dir: {run_dir} models continuous data ({run.config.data}); compression "
            "needs a model of integer levels (discrete data)"
        )
    return run


def run_compress(args: argparse.Namespace) -> dict[str, Any]:
    """Compress ``args.input`` into ``args.output``; return the sizes written.

    Example:
        >>> import tempfile
        >>> from pyro_dgm import datasets
        >>> from pyro_dgm.cli.config import RunConfig
        >>> from pyro_dgm.cli.fit import fit_run
        >>> root = Path(tempfile.mkdtemp())  # a one-epoch run of a small PixelCNN
        >>> config = RunConfig(data="digits", model="pixelcnn", epochs=1, num_layers=1,
        ...                    hidden=8, batch_size=2000, device="cpu")
        >>> _ = fit_run(config, root / "run", progress=False)
        >>> np.save(root / "x.npy", datasets.digits().test[:5].numpy().astype(np.int64))
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> add_compress_parsers(parser.add_subparsers(dest="command"))
        >>> argv = ["compress", str(root / "run"), str(root / "x.npy"), str(root / "x.pdgm")]
        >>> run_compress(parser.parse_args(argv))["num_points"]
        5
        >>> argv = ["decompress", str(root / "run"), str(root / "x.pdgm"), str(root / "y.npy")]
        >>> run_decompress(parser.parse_args(argv))["shape"]
        [5, 1, 8, 8]
        >>> bool((np.load(root / "y.npy") == np.load(root / "x.npy")).all())
        True
    """
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _check_output(args.output, args.overwrite)
    array = _load_npy(args.input, "input")
    run = _codec_run(args.run_dir)
    event_shape = tuple(run.data.event_shape)
    if array.ndim != 1 + len(event_shape) or tuple(array.shape[1:]) != event_shape:
        raise ValueError(
            f"input: expected an array of shape (N, {', '.join(map(str, event_shape))}) "
            f"(N data points of the run's event shape), got {array.shape}"
        )
    context = _context(run, args.labels, len(array))
    start = time.perf_counter()
    data = compression.compress_file(run.pair, array, context=context)
    seconds = time.perf_counter() - start
    save_with(args.output, lambda tmp: tmp.write_bytes(data), suffix=".tmp")
    header = compression.read_header(data)
    return {
        "output": str(args.output),
        "bytes": len(data),
        "header_bytes": header.size,
        "num_points": len(array),
        "bits_per_dim": 8 * len(data) / array.size,
        "seconds": seconds,
    }


def run_decompress(args: argparse.Namespace) -> dict[str, Any]:
    """Decompress ``args.input`` into the ``.npy`` ``args.output``; return its shape
    (see :func:`run_compress` for an example of both).

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> add_compress_parsers(parser.add_subparsers(dest="command"))
        >>> run_decompress(parser.parse_args(["decompress", "run", "/no/such.pdgm", "x.npy"]))
        Traceback (most recent call last):
        ...
        ValueError: input: /no/such.pdgm is not a file
    """
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _check_output(args.output, args.overwrite)
    if not args.input.is_file():
        raise ValueError(f"input: {args.input} is not a file")
    data = args.input.read_bytes()
    try:  # not a file of pyro-dgm compress: refused before the run is loaded
        header = compression.read_header(data)
    except ValueError as error:
        raise ValueError(f"input: {args.input}: {error}") from error
    run = _codec_run(args.run_dir)
    context = _context(run, args.labels, header.shape[0])
    start = time.perf_counter()
    array = compression.decompress_file(run.pair, data, context=context)
    seconds = time.perf_counter() - start

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as file:  # np.save(path) would append .npy to the name
            np.save(file, array, allow_pickle=False)

    save_with(args.output, save, suffix=".tmp")
    return {"output": str(args.output), "shape": list(array.shape), "seconds": seconds}


def compress_command(args: argparse.Namespace) -> int:
    """``pyro-dgm compress``: one line of sizes; errors are one ``pyro-dgm: error:`` line.

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> add_compress_parsers(parser.add_subparsers(dest="command"))
        >>> compress_command(parser.parse_args(["compress", "run", "/no/such.npy", "x.pdgm"]))
        2
    """
    try:
        done = run_compress(args)
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        return report_error(error)
    print(
        f"{done['num_points']} data points in {done['bytes']} bytes "
        f"({done['bits_per_dim']:.4f} bits/dim with the {done['header_bytes']}-byte header) "
        f"in {done['seconds']:.2f} s: {done['output']}"
    )
    return 0


def decompress_command(args: argparse.Namespace) -> int:
    """``pyro-dgm decompress``: one line; errors are one ``pyro-dgm: error:`` line.

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> add_compress_parsers(parser.add_subparsers(dest="command"))
        >>> decompress_command(parser.parse_args(["decompress", "run", "/no/such", "x.npy"]))
        2
    """
    try:
        done = run_decompress(args)
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        return report_error(error)
    print(f"an array of shape {tuple(done['shape'])} in {done['seconds']:.2f} s: {done['output']}")
    return 0


def code_length(pair: Any, inputs: tuple[Tensor, ...], num_levels: int | None) -> dict | str:
    r"""The bits per dimension that compressing ``inputs`` with ``pair`` writes (the
    file's bytes; header excluded and included; net of the initial bits of bits-back
    coding) and whether decoding gave them back, or why it cannot be measured.

    .. math:: \text{bits/dim written} = \frac{8 \cdot \text{payload bytes}}{N D}

    Example:
        >>> from pyro_dgm.distributions import PixelCNN
        >>> pixelcnn = PixelCNN((1, 4, 4), num_levels=5, hidden_channels=8, num_layers=1)
        >>> x = pixelcnn().sample((10,))
        >>> written = code_length(pixelcnn, (x,), num_levels=5)
        >>> written["round_trip"], written["bits_per_dim_with_header"] > written["bits_per_dim_written"]
        (True, True)
        >>> code_length(pixelcnn, (x.float(),), num_levels=None)
        'not available: the data are continuous (compression codes integer levels)'
    """
    if num_levels is None:
        return "not available: the data are continuous (compression codes integer levels)"
    x, context = inputs[0], (inputs[1] if len(inputs) > 1 else None)
    start = time.perf_counter()
    try:
        measured = compression.measure(pair, x, context=context)
    except (ImportError, ValueError) as error:
        return f"not available: {' '.join(str(error).split())}"
    return {
        "bits_per_dim_written": measured.bits_per_dim,
        "bits_per_dim_with_header": measured.bits_per_dim_with_header,
        "net_bits_per_dim": measured.net_bits_per_dim,
        "total_bytes": measured.total_bytes,
        "header_bytes": measured.header_bytes,
        "initial_bits": measured.initial_bits,
        "round_trip": measured.round_trip,
        "seconds": time.perf_counter() - start,
    }
