"""Flattening a PyTorch state_dict (or any mapping of name -> array) into the
one flat float32 vector flcache stores, and back.

The order is documented and stable: entries sorted by name (Python string
order, i.e. by code point), each tensor in row-major (C) order. Sorting, not
the dict's insertion order, makes two processes that built the same model in
different ways (or reloaded a checkpoint) agree. Every entry is stored as
float32; its dtype is kept in the layout and restored on the way back
(integer and bool buffers, e.g. BatchNorm's num_batches_tracked, are rounded:
a merged mean of counters is only approximately a counter).

The layout travels beside each update as JSON in the ModelUpdate record's
labels["layout"] (docs/protocol.md), so a reader can rebuild a state_dict
without the model's code: Store.update_layout(job, round, client).
"""
import json

import numpy as np

from .errors import FlcacheError


class Layout:
    """Names, shapes and dtypes of a flattened state_dict, in flat order."""

    def __init__(self, entries):
        # entries: list of (name, shape tuple, dtype str); offsets follow.
        self.entries = []
        off = 0
        for name, shape, dtype in entries:
            n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
            self.entries.append((name, tuple(int(x) for x in shape), str(dtype), off, n))
            off += n
        self.size = off

    def __eq__(self, other):
        return isinstance(other, Layout) and self.entries == other.entries

    def __repr__(self):
        return "Layout(%d tensors, %d floats)" % (len(self.entries), self.size)

    def to_json(self):
        return json.dumps({"order": "sorted-names", "size": self.size,
                           "tensors": [[n, list(s), d] for n, s, d, _, _ in self.entries]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        try:
            j = json.loads(text)
            if j.get("order") != "sorted-names":
                raise ValueError("order %r" % j.get("order"))
            lay = cls([(n, tuple(s), d) for n, s, d in j["tensors"]])
        except (ValueError, KeyError, TypeError) as e:
            raise FlcacheError("layout is not one this client understands: %s" % e) from None
        if lay.size != j["size"]:
            raise FlcacheError("layout says %d floats, its tensors hold %d" % (j["size"],
                                                                             lay.size))
        return lay


def _dtype_name(t):
    d = getattr(t, "dtype", None)
    s = str(d)
    return s[6:] if s.startswith("torch.") else str(np.dtype(d))


def _as_numpy(t):
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def layout_of(state_dict):
    """The Layout of a state_dict (names sorted)."""
    return Layout([(k, tuple(getattr(state_dict[k], "shape", ())), _dtype_name(state_dict[k]))
                   for k in sorted(state_dict)])


def flatten(state_dict):
    """(flat float32 vector, Layout) of a mapping name -> tensor/array."""
    if not state_dict:
        raise FlcacheError("cannot flatten an empty state_dict")
    lay = layout_of(state_dict)
    out = np.empty(lay.size, dtype=np.float32)
    for name, _, _, off, n in lay.entries:
        out[off:off + n] = _as_numpy(state_dict[name]).astype(np.float32, copy=False).ravel()
    return out, lay


def unflatten(vec, layout, torch_tensors=None):
    """The state_dict (dict name -> tensor) of flat vector vec by layout.
    Torch tensors when torch is importable (or torch_tensors=True), else
    NumPy arrays; each in its layout dtype."""
    vec = np.asarray(vec)
    if vec.size != layout.size:
        raise FlcacheError("vector of %d floats does not fit layout of %d" % (vec.size,
                                                                            layout.size))
    torch = None
    if torch_tensors is not False:
        try:
            import torch  # noqa: F811
        except ImportError:
            if torch_tensors:
                raise
    out = {}
    for name, shape, dtype, off, n in layout.entries:
        a = vec[off:off + n].reshape(shape)
        if torch is not None:
            td = getattr(torch, dtype)
            t = torch.from_numpy(a.copy())
            if not td.is_floating_point:
                t = t.round()
            out[name] = t.to(td)
        else:
            nd = np.dtype(dtype)
            out[name] = (np.rint(a) if nd.kind in "iub" else a).astype(nd)
    return out
