"""Read saved Keras models: file formats only, nothing about layers.

``load(path, weights=None)`` returns a ``SavedModel``: the model config (a dict) and a lazy
``WeightStore``. Formats, told apart by their first bytes, not their suffix:

- ``.keras`` zip (Keras 3, or tf_keras' own zip): ``config.json`` + ``model.weights.h5``,
  weights at saving_lib paths (``layers/multi_head_attention/query_dense/vars/0``);
- legacy HDF5 (tf.keras / tf_keras, or Keras 3 writing ``.h5``): ``model_config`` attribute,
  weights under ``model_weights/<layer name>`` listed by each group's ``weight_names``;
- ``model.to_json()`` text plus a separate weights file in either layout.
"""
from __future__ import annotations

import io
import json
import mmap
import os
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import h5py
import numpy as np

from .errors import ModelConfigError, ModelFileError, WeightError, describe_exception

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# Limits on hostile input. Keras writes configs of kilobytes to a few megabytes, nested
# about 4 levels per nested model; a zip member may inflate by at most MAX_INFLATION bytes
# beyond its compressed size (Keras stores members uncompressed).
MAX_CONFIG_BYTES = 32 * 2**20
MAX_JSON_DEPTH = 200
MAX_INFLATION = 256 * 2**20

# What h5py and libhdf5 raise on damaged files (flipped bytes, truncation).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError,
             IndexError, SystemError)


@contextmanager
def h5_errors(source: str, what: str):
    """Turn h5py's errors while reading ``what`` into a ``ModelFileError``."""
    try:
        yield
    except H5_ERRORS as exc:
        raise ModelFileError(f"{source}: cannot read {what} ({describe_exception(exc)}); "
                             f"the file looks damaged or truncated, save the model "
                             f"again") from None


# --------------------------------------------------------------------------- weights


class LayerWeights:
    """The stored weights of one layer, read from HDF5 only when asked for.

    ``names()`` are paths relative to the layer: ``kernel``, ``query/kernel`` (legacy
    layout) or ``vars/0``, ``query_dense/vars/0`` (saving_lib layout).
    """

    def __init__(self, source: str, layer_name: str, datasets: dict, layout: str,
                 max_bytes: Optional[int] = None, raw=None):
        self.layout = layout  # "saving_lib" or "legacy": how WeightSpec names map to paths
        self.max_bytes = max_bytes  # the size of the weights file: no weight is larger
        self._source = source
        self._layer_name = layer_name
        self._datasets = datasets  # name -> h5py.Dataset
        self._raw = raw  # the _StoredMember holding the HDF5 file, read directly when it can

    def names(self) -> list:
        return list(self._datasets)

    def __contains__(self, name: str) -> bool:
        return name in self._datasets

    def shape(self, name: str) -> tuple:
        with self._reading(name):
            shape = self._dataset(name).shape
            return () if shape is None else tuple(int(d) for d in shape)

    def problem(self, name: str) -> Optional[str]:
        """Why the stored weight ``name`` cannot be a Keras weight (its dtype is not
        numeric, or it declares more bytes than the file holds), or None."""
        with self._reading(name):
            dataset = self._dataset(name)
            dtype = dataset.dtype
            if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype:
                return f"is stored as {dtype}, not as numbers"
            size = dtype.itemsize
            for d in dataset.shape or ():
                size *= int(d)
        if self.max_bytes is not None and size > self.max_bytes:
            return (f"declares {size:,} bytes but the weights file holds only "
                    f"{self.max_bytes:,}")
        return None

    def get(self, name: str) -> np.ndarray:
        problem = self.problem(name)
        if problem is not None:
            raise WeightError(f"{self._source}: weight {name!r} of layer "
                              f"{self._layer_name!r} {problem}; save the model again")
        with self._reading(name):
            dataset = self._dataset(name)
            direct = None if self._raw is None else _read_contiguous(dataset, self._raw)
            return np.asarray(dataset[()]) if direct is None else direct

    def param_count(self) -> int:
        with self._reading("its weights"):
            return int(sum(int(np.prod(ds.shape or (), dtype=np.float64))
                           for ds in self._datasets.values()))

    def _reading(self, name: str):
        return h5_errors(self._source, f"weight {name!r} of layer {self._layer_name!r}")

    def nbytes(self) -> int:
        return int(sum(ds.nbytes for ds in self._datasets.values()))

    def view(self, prefixes: tuple) -> "LayerWeights":
        """The weights of a layer a wrapper holds, named as that layer's own:
        ``prefixes`` is (legacy prefix, saving_lib prefix), e.g. ("sub_0/", "layers/lstm/")."""
        prefix = prefixes[1] if self.layout == "saving_lib" else prefixes[0]
        return LayerWeights(self._source, f"{self._layer_name}/{prefix.rstrip('/')}",
                            {name.removeprefix(prefix): ds for name, ds in self._datasets.items()
                             if name.startswith(prefix)}, self.layout, self.max_bytes,
                            self._raw)

    def _dataset(self, name: str):
        try:
            return self._datasets[name]
        except KeyError:
            raise WeightError(
                f"layer {self._layer_name!r}: weight {name!r} is missing from {self._source} "
                f"(it has: {', '.join(self._datasets) or 'none'}); save the weights again "
                f"from the model that matches this config"
            ) from None


class WeightStore:
    """Finds each layer's weights by the path rule of the Keras that wrote the file."""

    def __init__(self, source: str, h5file: h5py.File, size: Optional[int] = None, raw=None):
        self.source = source
        self.size = size  # bytes of the HDF5 file: no weight declares more
        self._file = h5file
        self._raw = raw  # see LayerWeights

    def layer(self, names: tuple, saving_path: str) -> LayerWeights:
        """Weights of the layer at ``names`` (layer names from the top-level model down)
        whose saving_lib path is ``saving_path``."""
        raise NotImplementedError

    def close(self) -> None:
        self._file.close()

    def _collect(self, group, layer_name: str, skip=()) -> dict:
        datasets = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not any(part in skip for part in name.split("/")):
                datasets[name] = obj

        with h5_errors(self.source, f"the weights of layer {layer_name!r}"):
            group.visititems(visit)
        return datasets


class SavingLibWeights(WeightStore):
    """``model.weights.h5`` as Keras 3's saving_lib writes it (also tf_keras' ``.keras``)."""

    # Random-state holders are saved like weights but are not weights of the layer.
    NOT_WEIGHTS = ("seed_generator", "_seed_generator")

    def layer(self, names: tuple, saving_path: str) -> LayerWeights:
        with h5_errors(self.source, f"the weights of layer {names[-1]!r}"):
            group = self._file.get(saving_path) if saving_path else None
            if group is not None and not isinstance(group, h5py.Group):
                group = None
        datasets = {} if group is None else self._collect(group, names[-1], self.NOT_WEIGHTS)
        # tf_keras names sub-layers by their private attribute (``_query_dense``), Keras 3
        # without the underscore (``query_dense``): use Keras 3's names.
        datasets = {"/".join(part.lstrip("_") for part in name.split("/")): ds
                    for name, ds in datasets.items()}
        return LayerWeights(self.source, "/".join(names), datasets, "saving_lib", self.size,
                            self._raw)


class LegacyH5Weights(WeightStore):
    """Legacy HDF5 weights: one group per top-level layer, whose ``weight_names`` attribute
    lists its weights as ``<layer>/<weight>[:0]``; a nested model's group lists the weights
    of all its inner layers."""

    def __init__(self, source: str, h5file: h5py.File, root, size: Optional[int] = None):
        super().__init__(source, h5file, size)
        self._root = root

    def layer(self, names: tuple, saving_path: str) -> LayerWeights:
        datasets = {}
        with h5_errors(self.source, f"the weights of layer {names[-1]!r}"):
            group = self._root.get(names[0])
            if isinstance(group, h5py.Group):
                for stored_name in _weight_names(group):
                    relative = _relative_weight_name(stored_name, names)
                    if relative is not None and stored_name in group:
                        dataset = group[stored_name]
                        if isinstance(dataset, h5py.Dataset):
                            datasets[relative] = dataset
        return LayerWeights(self.source, "/".join(names), datasets, "legacy", self.size)


def _weight_names(group) -> list:
    names = group.attrs.get("weight_names")
    if names is None or np.ndim(names) != 1:
        return []
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _relative_weight_name(stored_name: str, names: tuple) -> Optional[str]:
    """``mha/query/kernel:0`` -> ``query/kernel`` for layer ("mha",).

    Inside a nested model the stored name starts with the inner layer's name, possibly
    preceded by names of the models that enclose it (``seq/dense/kernel``)."""
    parts = stored_name.removesuffix(":0").split("/")
    own = names[-1]
    if own not in parts[:-1]:
        return None
    at = parts.index(own)
    enclosing = parts[:at]
    if not _is_subsequence(enclosing, names[:-1]):
        return None
    return "/".join(parts[at + 1:])


def _is_subsequence(items: list, sequence: tuple) -> bool:
    remaining = iter(sequence)
    return all(item in remaining for item in items)


# --------------------------------------------------------------------------- files


@dataclass
class SavedModel:
    """A saved model as read from disk: its config and its weights."""

    source: str
    format: str  # "keras", "h5" or "json"
    config: dict  # {"class_name": ..., "config": {...}, ...}
    keras_version: Optional[str]
    weights: Optional[WeightStore]

    def close(self) -> None:
        if self.weights is not None:
            self.weights.close()


def load(path, weights=None) -> SavedModel:
    """Read a ``.keras`` zip, a legacy ``.h5`` file, or ``to_json()`` text (+ ``weights``).

    ``weights`` is required for JSON; for the other formats it replaces the stored weights.
    """
    path = os.fspath(path)
    head = _read_head(path)
    if head.startswith(ZIP_MAGIC):
        model = _load_keras_zip(path)
    elif head.startswith(HDF5_MAGIC):
        model = _load_legacy_h5(path)
    else:
        model = _load_json(path)
    if weights is not None:
        model.close()
        model.weights = None
        model.weights = load_weights(weights)
    return model


def load_weights(path) -> WeightStore:
    """Open a weights file: Keras 3 ``.weights.h5``, legacy ``.h5`` weights, or a whole
    legacy model ``.h5`` whose weights are wanted."""
    path = os.fspath(path)
    if not _read_head(path).startswith(HDF5_MAGIC):
        raise ModelFileError(f"{path}: not an HDF5 weights file; pass the file written by "
                             f"model.save_weights(...)")
    h5 = _open_h5(path, path)
    return _weight_store(path, h5, _file_size(path))


def _weight_store(source: str, h5: h5py.File, size: int) -> WeightStore:
    try:
        with h5_errors(source, "the weights"):
            if isinstance(h5.get("model_weights"), h5py.Group):
                return LegacyH5Weights(source, h5, h5["model_weights"], size)
            if "layer_names" in h5.attrs:
                return LegacyH5Weights(source, h5, h5, size)
            if "layers" in h5 or "vars" in h5:
                return SavingLibWeights(source, h5, size)
    except BaseException:
        h5.close()
        raise
    h5.close()
    raise ModelFileError(f"{source}: this HDF5 file holds no Keras weights; pass the file "
                         f"written by model.save_weights(...)")


def _read_head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory; pass a .keras, .h5 or .json file "
                             f"(TensorFlow SavedModel directories are not read)") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None


def _open_h5(source: str, file_or_path) -> h5py.File:
    try:
        if isinstance(file_or_path, str):
            with open(file_or_path, "rb") as f:
                _check_global_heaps(source, f)
        else:
            _check_global_heaps(source, file_or_path)
            file_or_path.seek(0)
        return h5py.File(file_or_path, "r")
    except H5_ERRORS as exc:
        raise ModelFileError(f"{source}: cannot be read as HDF5 ({describe_exception(exc)}); "
                             f"the file looks truncated or corrupt, save the model "
                             f"again") from None


GLOBAL_HEAP = b"GCOL"
MAX_GLOBAL_HEAP = 256 * 2**20


def _check_global_heaps(source: str, f) -> None:
    """Refuse damaged global heap collections (where HDF5 keeps variable-length strings,
    such as ``weight_names``) on which libhdf5 would loop forever: it walks a collection
    object by object, and a damaged free-space entry of 0 bytes never advances. Every
    collection signature anywhere in the file is checked."""
    for window, lead, first in _windows(f):
        at = window.find(GLOBAL_HEAP, lead)
        while at != -1:
            _check_heap(source, f, first + at - lead)
            at = window.find(GLOBAL_HEAP, at + 1)


SCAN_WINDOW = 64 * 2**20


def _windows(f):
    """The bytes of the seekable file ``f`` as (window, lead, offset): the window's bytes
    from ``lead`` on are the file's from ``offset``. Windows are mapped from the file (never
    read into memory, so the scan costs no copy and holds at most one window), each
    overlapping the next by the 3 bytes a signature that starts in it can run over; an
    in-memory file comes in one piece."""
    if isinstance(f, io.BytesIO):
        yield f.getvalue(), 0, 0
        return
    fileno, start, size = f.region() if isinstance(f, _StoredMember) else (
        f.fileno(), 0, os.fstat(f.fileno()).st_size)
    size = max(0, min(size, os.fstat(fileno).st_size - start))  # a header may claim more
    for first in range(0, size, SCAN_WINDOW):
        begin = start + first
        lead = begin % mmap.ALLOCATIONGRANULARITY  # a mapping starts on that boundary
        length = lead + min(SCAN_WINDOW + len(GLOBAL_HEAP) - 1, size - first)
        with mmap.mmap(fileno, length, offset=begin - lead, access=mmap.ACCESS_READ) as window:
            yield window, lead, first


def _check_heap(source: str, f, offset: int) -> None:
    f.seek(offset)
    header = f.read(16)
    size = int.from_bytes(header[8:16], "little")
    if len(header) < 16 or header[4] != 1 or not 32 <= size <= MAX_GLOBAL_HEAP:
        return  # not a collection (HDF5 writes version 1): weight data that looks alike
    body = header + f.read(max(size - 16, 0))
    end, at = min(size, len(body)), 16
    while at < end:
        if at + 16 > end:
            return  # the rest is free space
        index = int.from_bytes(body[at:at + 2], "little")
        length = int.from_bytes(body[at + 8:at + 16], "little")
        need = 16 + (length + 7) // 8 * 8 if index else length
        if need <= 0:
            raise ModelFileError(f"{source}: an HDF5 heap at byte {offset} is damaged (an "
                                 f"entry of 0 bytes); save the model again")
        at += need


def _read_member(archive: zipfile.ZipFile, name: str, path: str, limit: int) -> bytes:
    """A zip member's bytes, refused before reading when it would inflate past ``limit``
    or by more than MAX_INFLATION, and read with a bounded read whatever its header says."""
    info = archive.getinfo(name)
    if info.file_size > limit or info.file_size - info.compress_size > MAX_INFLATION:
        raise ModelFileError(f"{path}: {name} inflates to {info.file_size:,} bytes, more than "
                             f"kerasonnx reads ({min(limit, info.compress_size + MAX_INFLATION):,}); "
                             f"this is not a file Keras wrote")
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ModelFileError(f"{path}: {name} does not hold the {info.file_size:,} bytes its "
                             f"zip header declares; the file is damaged, save the model again")
    return data


def _load_keras_zip(path: str) -> SavedModel:
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if "config.json" not in members:
                raise ModelFileError(f"{path}: this zip has no config.json, so it is not a "
                                     f".keras model file")
            config = _parse_json(_read_member(archive, "config.json", path, MAX_CONFIG_BYTES),
                                 f"{path}:config.json")
            metadata = {}
            if "metadata.json" in members:
                metadata = _parse_json(_read_member(archive, "metadata.json", path,
                                                    MAX_CONFIG_BYTES), f"{path}:metadata.json")
            metadata = metadata if isinstance(metadata, dict) else {}
            weights = None
            if "model.weights.h5" in members:
                data = _member_file(path, archive, "model.weights.h5")
                weights = SavingLibWeights(path, _open_h5(f"{path}:model.weights.h5", data),
                                           archive.getinfo("model.weights.h5").file_size,
                                           data if isinstance(data, _StoredMember) else None)
            elif "model.weights.json" in members:
                raise ModelFileError(f"{path}: sharded weights (model.weights.json) are not "
                                     f"supported; save the model without max_shard_size")
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error, OSError,
            NotImplementedError, RuntimeError, ValueError, KeyError) as exc:
        # zlib.error: a damaged deflate stream; NotImplementedError: an unknown compression
        # method; RuntimeError: an encrypted member; KeyError: a damaged central directory.
        raise ModelFileError(f"{path}: not a readable .keras archive "
                             f"({describe_exception(exc)}); the file looks truncated or "
                             f"corrupt, save the model again") from None
    version = metadata.get("keras_version")
    return SavedModel(path, "keras", _model_config(config, path),
                      version if isinstance(version, str) else None, weights)


class _StoredMember(io.RawIOBase):
    """An uncompressed zip member read in place, through a file handle of its own: weights
    stream from disk as h5py asks for them instead of being copied into memory first."""

    def __init__(self, path: str, start: int, size: int):
        self._file = open(path, "rb")
        self._start, self._size, self._position = start, size, 0

    def region(self) -> tuple:
        """(file descriptor of the archive, offset of the member in it, its size)."""
        return self._file.fileno(), self._start, self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._position))
        self._file.seek(self._start + self._position)
        count = self._file.readinto(view[:count])
        self._position += count
        return count

    def read_at(self, offset: int, out: np.ndarray) -> None:
        """Fill ``out`` with the member's bytes from ``offset``."""
        self._file.seek(self._start + offset)
        if offset + out.nbytes > self._size or self._file.readinto(out) != out.nbytes:
            raise OSError("the weights end early")

    def close(self) -> None:
        self._file.close()
        super().close()


def _read_contiguous(dataset, raw: _StoredMember) -> Optional[np.ndarray]:
    """A plain numeric dataset stored contiguously (unchunked, so unfiltered), read straight
    from the zip member into its array, without HDF5's file-object callbacks (several times
    faster on big weights); None for any other layout."""
    offset = dataset.id.get_offset()
    if (offset is None or dataset.chunks is not None or dataset.size == 0
            or dataset.dtype.kind not in "biuf" or dataset.dtype.fields is not None):
        return None
    array = np.empty(dataset.shape, dataset.dtype)
    raw.read_at(offset, array.reshape(-1).view(np.uint8))
    return array


def _member_file(path: str, archive: zipfile.ZipFile, name: str):
    """A seekable file of the member ``name``: read in place when it is stored
    uncompressed (as Keras writes it), else decompressed into memory."""
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return io.BytesIO(_read_member(archive, name, path, 2**63))
    with open(path, "rb") as f:  # the data follows the local header and its own extra field
        f.seek(info.header_offset)
        header = f.read(zipfile.sizeFileHeader)
    if len(header) != zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
        raise zipfile.BadZipFile(f"bad local header of {name}")
    name_length, extra_length = int.from_bytes(header[26:28], "little"), int.from_bytes(
        header[28:30], "little")
    return _StoredMember(path, info.header_offset + zipfile.sizeFileHeader + name_length
                         + extra_length, info.file_size)


def _load_legacy_h5(path: str) -> SavedModel:
    h5 = _open_h5(path, path)
    try:
        with h5_errors(path, "the model config"):
            raw = None
            if "model_config" in h5.attrs:
                size = h5.attrs.get_id("model_config").get_storage_size()
                if size > MAX_CONFIG_BYTES:
                    raise ModelFileError(f"{path}: the model config takes {size:,} bytes, more "
                                         f"than kerasonnx reads ({MAX_CONFIG_BYTES:,}); this is "
                                         f"not a file Keras wrote")
                raw = h5.attrs.get("model_config")
            version = h5.attrs.get("keras_version")
        if raw is None:
            raise ModelFileError(f"{path}: this HDF5 file holds weights only, no model "
                                 f"config; pass the model's JSON (model.to_json()) with "
                                 f"--weights {path}")
        if isinstance(raw, np.ndarray) and raw.size == 1:
            raw = raw.reshape(()).item()
        if not isinstance(raw, (str, bytes)):
            raise ModelFileError(f"{path}: the model_config attribute is not JSON text; the "
                                 f"file is damaged, save the model again")
        config = _model_config(_parse_json(raw, path), path)
        if isinstance(version, bytes):
            version = version.decode("utf-8", "replace")
    except BaseException:
        h5.close()
        raise
    return SavedModel(path, "h5", config, version if isinstance(version, str) else None,
                      _weight_store(path, h5, _file_size(path)))


def _load_json(path: str) -> SavedModel:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{path}: more than {MAX_CONFIG_BYTES:,} bytes, larger than any "
                             f"model config Keras writes; pass model.to_json() text")
    config = _parse_json(raw, path)
    return SavedModel(path, "json", _model_config(config, path),
                      _version(config.get("keras_version")) if isinstance(config, dict) else None,
                      None)


def _version(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def _parse_json(raw, source: str):
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{source}: not a Keras model file (neither a .keras zip, an "
                                 f"HDF5 .h5 file, nor JSON text)") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{source}: not a Keras model file: invalid JSON at line "
                             f"{exc.lineno} column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        value = None  # deeper than Python's own limit: refused below like any deep value
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(value, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise ModelConfigError(f"{source}: the JSON is nested more than {MAX_JSON_DEPTH} "
                               f"levels deep; Keras never writes that, this is not a model "
                               f"config")
    return value


def json_depth(value, limit: int) -> int:
    """The nesting depth of a JSON value, counted without recursion and given up on
    (returning ``limit + 1``) once it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _model_config(config, source: str) -> dict:
    if (not isinstance(config, dict) or not isinstance(config.get("class_name"), str)
            or not isinstance(config.get("config"), dict)):
        raise ModelConfigError(f"{source}: this JSON is not a Keras model (expected "
                               f"{{\"class_name\": ..., \"config\": {{...}}}} as written by "
                               f"model.to_json())")
    return config
