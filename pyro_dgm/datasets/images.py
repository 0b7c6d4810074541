r"""Image data sets as integer tensors: scikit-learn's bundled digits, and MNIST from IDX files.

Images stay integers, shape :math:`(N, 1, H, W)` and dtype ``torch.uint8``, until a
dequantizer or a discretized likelihood meets them. Nothing is downloaded: ``digits``
ships with scikit-learn, and :func:`mnist` reads the IDX files from a folder the user
already has. :func:`read_idx` and :func:`write_idx` read and write the IDX format itself.

References:
    | Gradient-based learning applied to document recognition (LeCun et al., 1998)
    | http://yann.lecun.com/exdb/mnist/ (the IDX file format)
    | Optical Recognition of Handwritten Digits (Alpaydin & Kaynak, 1998), UCI repository
    | https://doi.org/10.24432/C50P49
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..utils.checks import check_int
from .splits import Dataset

__all__ = [
    "DIGITS_SPLIT",
    "digits",
    "mnist",
    "read_idx",
    "write_idx",
]

#: Sizes of the (train, validation, test) splits of :func:`digits`; they sum to 1797.
DIGITS_SPLIT = (1257, 180, 360)

# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}

_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", 0x00000803),
    "train_labels": ("train-labels-idx1-ubyte", 0x00000801),
    "test_images": ("t10k-images-idx3-ubyte", 0x00000803),
    "test_labels": ("t10k-labels-idx1-ubyte", 0x00000801),
}


def digits(*, seed: int = 0) -> Dataset:
    r"""Loads scikit-learn's bundled handwritten digits as 17-level integer images.

    The 1797 images of ``sklearn.datasets.load_digits`` are :math:`8 \times 8` counts in
    :math:`\{0, \dots, 16\}` (Alpaydin & Kaynak, 1998). They are split once, by the
    permutation ``numpy.random.RandomState(seed).permutation(1797)``: its first 360
    indices are the test set, the next 180 the validation set and the remaining 1257 the
    training set (:data:`DIGITS_SPLIT`); the splits are disjoint and cover every image.

    Uniform coding of these images costs :math:`\log_2 17 = 4.087` bits per dimension.

    Arguments:
        seed: The seed of the split.

    Returns:
        A :class:`Dataset` named ``"digits"``: images of shape :math:`(N, 1, 8, 8)`, dtype
        ``torch.uint8``, ``num_levels=17``, labels :math:`\{0, \dots, 9\}` (``torch.int64``).

    Example:
        >>> d = digits()
        >>> d.train.shape, d.train.dtype, d.num_levels
        (torch.Size([1257, 1, 8, 8]), torch.uint8, 17)
    """
    # imported here so that `import pyro_dgm.datasets` does not pay for scikit-learn
    from sklearn.datasets import load_digits

    check_int(seed, "seed", 0, 2**32 - 1)
    bunch = load_digits()
    images = np.asarray(bunch.images)
    if images.shape != (sum(DIGITS_SPLIT), 8, 8) or not np.array_equal(images, images.round()):
        raise ValueError(  # a guard against a changed scikit-learn, not a user error
            f"load_digits: expected 1797 integer 8x8 images, got shape {images.shape}"
        )
    x = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(np.asarray(bunch.target).astype(np.int64))
    perm = torch.from_numpy(np.random.RandomState(seed).permutation(len(x)))
    _, n_val, n_test = DIGITS_SPLIT
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return Dataset(
        "digits",
        train=x[train],
        validation=x[val],
        test=x[test],
        num_levels=17,
        train_labels=y[train],
        validation_labels=y[val],
        test_labels=y[test],
    )


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip, whatever the name says
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: a corrupt gzip file ({e})") from e
    return data


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than a header")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{magic:08x}, expected 0x0000TTNN with "
            f"a type TT in {{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}} and NN >= 1 "
            "dimensions"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: IDX header with {ndim} dimensions needs {header} bytes, file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} of {dtype.name} ({expected} bytes of "
            f"data), but the file has {len(data) - header} bytes after the header"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    r"""Reads an IDX file (plain or gzip-compressed) into a numpy array.

    An IDX file is a 4-byte magic number ``0x0000TTNN`` (type code ``TT``: ``0x08`` uint8,
    ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64;
    ``NN`` dimensions), then ``NN`` big-endian uint32 sizes, then the data in C order,
    big-endian.

    Arguments:
        path: The file; gzip compression is detected from its first bytes.

    Returns:
        The array, in native byte order, with the shape given by the header.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the header is malformed or the data size disagrees with it.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = write_idx(path, np.arange(4, dtype=np.uint8))
        >>> read_idx(path)
        array([0, 1, 2, 3], dtype=uint8)
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray | Tensor) -> Path:
    r"""Writes an array as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    The inverse of :func:`read_idx`: the magic number ``0x0000TTNN`` (type code and number
    of dimensions), the sizes as big-endian uint32, then the values in C order, big-endian.
    Useful to export data to tools that read MNIST-style files.

    Arguments:
        path: The file to write (its folder must exist).
        array: A numpy array or tensor of dtype uint8, int8, int16, int32, float32 or
            float64, with 1 to 255 dimensions.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = write_idx(f"{d}/x-idx2-ubyte.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
        ...     read_idx(p).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    if isinstance(array, Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"array: expected a numpy array or tensor, got {type(array).__name__}")
    code = _IDX_CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"array: expected dtype uint8, int8, int16, int32, float32 or float64, "
            f"got {array.dtype}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array: expected 1 to 255 dimensions, got {array.ndim}")
    if any(s >= 2**32 for s in array.shape):
        raise ValueError(f"array: expected every size < 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    body = np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    data = header + body
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _find_mnist_files(folder: Path) -> dict[str, Path]:
    found, missing = {}, []
    for key, (stem, _) in _MNIST_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(stem)
    if missing:
        raise FileNotFoundError(
            f"mnist: missing {', '.join(f'{m}[.gz]' for m in missing)} in folder {folder} "
            f"(it needs {', '.join(stem for stem, _ in _MNIST_FILES.values())}, each plain "
            "or gzip-compressed with a .gz suffix; nothing is downloaded)"
        )
    return found


def _read_checked(path: Path, magic: int) -> np.ndarray:
    data = _read_bytes(path)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        what = f"0x{found:08x}" if found is not None else f"a file of {len(data)} bytes"
        raise ValueError(f"{path}: expected IDX magic number 0x{magic:08x}, found {what}")
    return _parse_idx(data, path)


def mnist(
    path: str | os.PathLike, *, validation_size: int = 10_000, name: str = "mnist"
) -> Dataset:
    r"""Reads MNIST (or any data set in its format) from the four IDX files in a folder.

    The folder must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or with a
    ``.gz`` suffix (LeCun et al., 1998). Image files must have the magic number
    ``0x00000803`` (uint8, 3 dimensions) and label files ``0x00000801`` (uint8, 1
    dimension). The validation set is the last ``validation_size`` images of the training
    file, the training set the ones before. Nothing is downloaded. Fashion-MNIST and
    KMNIST use the same file names and format.

    Arguments:
        path: The folder.
        validation_size: How many images of the training file go to validation, in
            :math:`[0, N_\text{train})`.
        name: The name of the returned data set.

    Returns:
        A :class:`Dataset`: images of shape :math:`(N, 1, H, W)` (:math:`28 \times 28`
        for MNIST), dtype ``torch.uint8``, ``num_levels=256``, labels ``torch.int64``.

    Raises:
        FileNotFoundError: If a file is missing; the message names the missing files and
            the folder.
        ValueError: If a header is malformed (naming the file and the magic number found)
            or the sizes disagree.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())  # four tiny files in MNIST's format
        >>> for split, n in (("train", 12), ("t10k", 4)):
        ...     _ = write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        ...     _ = write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
        >>> mnist(folder, validation_size=2)  # doctest: +NORMALIZE_WHITESPACE
        Dataset(name='mnist', train=10, validation=2, test=4, event_shape=(1, 28, 28),
                dtype=torch.uint8, num_levels=256, labels=True)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"mnist: folder {folder} does not exist (nothing is downloaded)")
    files = _find_mnist_files(folder)
    arrays = {key: _read_checked(files[key], _MNIST_FILES[key][1]) for key in _MNIST_FILES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise ValueError(
                f"mnist: {files[f'{split}_images'].name} has {len(images)} images but "
                f"{files[f'{split}_labels'].name} has {len(labels)} labels"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(
            f"mnist: training images are {arrays['train_images'].shape[1:]} but test images "
            f"are {arrays['test_images'].shape[1:]}"
        )
    n = len(arrays["train_images"])
    check_int(validation_size, f"validation_size (of {n} training images)", 0, n - 1)
    x = torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1)
    y = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    x_test = torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1)
    y_test = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    cut = n - validation_size
    return Dataset(
        name,
        train=x[:cut],
        validation=x[cut:],
        test=x_test,
        num_levels=256,
        train_labels=y[:cut],
        validation_labels=y[cut:],
        test_labels=y_test,
    )
