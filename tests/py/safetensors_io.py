# Minimal independent safetensors reader/writer (single files and sharded checkpoints) for the test oracles.
"""Written from the safetensors layout (u64 LE header length, JSON header, data buffer).

Tensors are handed out as numpy arrays of their *storage* type: BF16 and F8_E4M3 come back as
uint16 / uint8 bit patterns, F16 as float16, F32 as float32, U8 as uint8. Nothing here converts
values; the oracles do that explicitly.
"""
import json
import os
import struct

import numpy as np

# dtype string -> (numpy storage dtype, bytes per element)
STORAGE = {
    "BOOL": (np.uint8, 1),
    "U8": (np.uint8, 1),
    "I8": (np.int8, 1),
    "F8_E4M3": (np.uint8, 1),
    "F8_E5M2": (np.uint8, 1),
    "I16": (np.int16, 2),
    "U16": (np.uint16, 2),
    "F16": (np.float16, 2),
    "BF16": (np.uint16, 2),
    "I32": (np.int32, 4),
    "U32": (np.uint32, 4),
    "F32": (np.float32, 4),
    "I64": (np.int64, 8),
    "U64": (np.uint64, 8),
    "F64": (np.float64, 8),
}

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def read_header(path):
    """Returns (header dict in file order, offset of the data buffer)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError(f"{path}: header length {n} too large")
        text = f.read(n)
    if len(text) != n:
        raise ValueError(f"{path}: truncated header")
    header = json.loads(text.decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    return header, 8 + n


def numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


class SafetensorsFile:
    """One .safetensors file, memory-mapped read-only."""

    def __init__(self, path):
        self.path = path
        self.header, self.data_start = read_header(path)
        self.metadata = self.header.get("__metadata__")
        self.names = [k for k in self.header if k != "__metadata__"]
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) > 0 else None

    def info(self, name):
        e = self.header[name]
        return e["dtype"], [int(d) for d in e["shape"]]

    def raw_bytes(self, name):
        e = self.header[name]
        b, end = e["data_offsets"]
        return self._map[self.data_start + b : self.data_start + end]

    def tensor(self, name):
        dtype, shape = self.info(name)
        st, size = STORAGE[dtype]
        raw = self.raw_bytes(name)
        if raw.size != numel(shape) * size:
            raise ValueError(f"{self.path}: {name}: size mismatch")
        return np.frombuffer(raw, dtype=np.dtype(st).newbyteorder("<")).reshape(shape)


class Checkpoint:
    """A Hugging Face checkpoint directory: model.safetensors, or shards with an index."""

    def __init__(self, directory):
        self.dir = directory
        index_path = os.path.join(directory, INDEX_NAME)
        self.files = {}
        self.where = {}
        self.names = []
        if os.path.exists(index_path):
            with open(index_path) as f:
                self.index = json.load(f)
            shard_names = []
            for t, fn in self.index["weight_map"].items():
                if fn not in shard_names:
                    shard_names.append(fn)
            shard_names.sort()
        else:
            self.index = None
            shard_names = [SINGLE_NAME]
        for fn in shard_names:
            sf = SafetensorsFile(os.path.join(directory, fn))
            self.files[fn] = sf
            for n in sf.names:
                if n in self.where:
                    raise ValueError(f"{directory}: tensor {n} appears twice")
                self.where[n] = sf
                self.names.append(n)
        if self.index is not None:
            wm = self.index["weight_map"]
            if set(wm) != set(self.where):
                raise ValueError(f"{directory}: index weight_map does not match the shards")
            for n, fn in wm.items():
                if self.where[n] is not self.files[fn]:
                    raise ValueError(f"{directory}: index puts {n} in {fn}, but it is elsewhere")

    def info(self, name):
        return self.where[name].info(name)

    def tensor(self, name):
        return self.where[name].tensor(name)

    def raw_bytes(self, name):
        return self.where[name].raw_bytes(name)

    def metadata(self):
        """__metadata__ of the first file (all shards normally carry the same)."""
        for sf in self.files.values():
            return sf.metadata
        return None


def _header_bytes(entries, metadata):
    """entries: list of (name, dtype, shape, nbytes) in file order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name, dtype, shape, nbytes in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text


class StreamWriter:
    """Writes one safetensors file whose tensor list is known up front; data is appended in order."""

    def __init__(self, path, entries, metadata=None):
        self.entries = [(n, d, list(s), numel(s) * STORAGE[d][1]) for n, d, s in entries]
        self.f = open(path, "wb")
        self.f.write(_header_bytes(self.entries, metadata))
        self.pos = 0
        self.written = 0

    def write(self, name, data):
        """Appends the bytes (or part of the bytes) of tensor `name`; parts must arrive in order."""
        n, d, s, nbytes = self.entries[self.pos]
        if n != name:
            raise ValueError(f"expected tensor {n}, got {name}")
        b = np.ascontiguousarray(data).tobytes() if not isinstance(data, (bytes, bytearray)) else bytes(data)
        self.f.write(b)
        self.written += len(b)
        if self.written > nbytes:
            raise ValueError(f"{name}: too many bytes")
        if self.written == nbytes:
            self.pos += 1
            self.written = 0

    def close(self):
        if self.pos != len(self.entries):
            raise ValueError("not all tensors written")
        self.f.close()


def write_file(path, tensors, metadata=None):
    """tensors: list of (name, dtype, array-in-storage-type). Written in list order."""
    if metadata is None:
        metadata = {"format": "pt"}
    w = StreamWriter(path, [(n, d, a.shape) for n, d, a in tensors], metadata)
    for n, d, a in tensors:
        st = STORAGE[d][0]
        if np.dtype(a.dtype) != np.dtype(st):
            raise ValueError(f"{n}: array dtype {a.dtype} does not match {d}")
        w.write(n, np.ascontiguousarray(a).astype(np.dtype(st).newbyteorder("<"), copy=False))
    w.close()


def write_index(directory, weight_map, total_size):
    with open(os.path.join(directory, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
