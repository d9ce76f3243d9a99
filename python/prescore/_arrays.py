"""Arrays in and out: NumPy arrays and CPU PyTorch tensors as the library's
tensor layouts (element type, strides in elements), without a copy where
the library can read the memory as it is.

A tensor's four axes are, in the library's order, batch, head, token, dim.
The caller's arrays are [batch, head, token, dim] ("bhtd") or
[batch, token, head, dim] ("bthd", PyTorch's q.view(b, n, h, d) before the
transpose); a 3-D array has no batch axis."""
import numpy as np

from . import _ffi

LAYOUTS = {"bhtd": (0, 1, 2, 3), "bthd": (0, 2, 1, 3)}
_FLOAT_TYPES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}


class Converted:
    """One input as the library sees it: a NumPy array (kept alive while
    the call runs), its 4-D shape in library order, dtype name and strides,
    and how to give results back in the caller's kind (NumPy or torch)."""

    def __init__(self, array, shape, dtype, strides, torch_dtype):
        self.array, self.shape, self.dtype = array, shape, dtype
        self.strides, self.torch_dtype = strides, torch_dtype

    def pointer(self):
        return self.array.ctypes.data

    def layout(self):
        lay = _ffi.TensorLayout()
        lay.dtype = _ffi.DTYPE[self.dtype]
        lay.offset = 0
        for i, s in enumerate(self.strides):
            lay.stride[i] = s
        return lay


def _numpy_view(x, name):
    """(NumPy array sharing x's memory where possible, torch dtype or None)."""
    if isinstance(x, np.ndarray):
        return x, None
    if type(x).__module__.split(".")[0] == "torch":
        import torch
        if x.device.type != "cpu":
            raise ValueError("%s is on %s: prescore takes CPU tensors (the library copies "
                             "to its own OpenCL device)" % (name, x.device))
        x = x.detach()
        if x.dtype == torch.bfloat16:
            return x.float().numpy(), x.dtype  # no bfloat16 in the library: widened
        if x.dtype not in (torch.float32, torch.float16):
            raise TypeError("%s is %s: prescore takes float32 or float16" % (name, x.dtype))
        return x.resolve_conj().resolve_neg().numpy(), x.dtype
    raise TypeError("%s is a %s: prescore takes NumPy arrays or CPU torch tensors" %
                    (name, type(x).__name__))


def convert(x, name, layout="bhtd", dtype=None):
    """Converted form of x (rank 3 or 4 in @layout's axis order). @dtype
    ("float32"/"float16") forces the element type (a copy if it differs);
    strides the library cannot take (negative, zero on a longer axis, rows
    not contiguous, not a whole number of elements) make a dense copy."""
    if layout not in LAYOUTS:
        raise ValueError("layout must be one of %s, not %r" % (sorted(LAYOUTS), layout))
    arr, torch_dtype = _numpy_view(x, name)
    if arr.ndim == 3:
        arr = arr[np.newaxis]
    if arr.ndim != 4:
        raise ValueError("%s has %d dimensions: prescore takes 3 ([head, token, dim]) or 4" %
                         (name, arr.ndim))
    if arr.dtype not in _FLOAT_TYPES:
        raise TypeError("%s is %s: prescore takes float32 or float16" % (name, arr.dtype))
    want = dtype or _FLOAT_TYPES[arr.dtype]
    if _FLOAT_TYPES[arr.dtype] != want:
        arr = arr.astype(np.float32 if want == "float32" else np.float16)
    perm = LAYOUTS[layout]
    shape = tuple(arr.shape[p] for p in perm)
    if min(shape) == 0:
        raise ValueError("%s has an empty axis: shape %s" % (name, arr.shape))
    strides = _library_strides(arr, perm)
    if strides is None:
        arr = np.ascontiguousarray(arr)
        strides = _library_strides(arr, perm)
    return Converted(arr, shape, want, strides, torch_dtype)


def _library_strides(arr, perm):
    """Element strides in library order, or None where the library cannot
    read the array as it lies."""
    size = arr.itemsize
    out = []
    for p in perm[:3]:
        n, s = arr.shape[p], arr.strides[p]
        if n == 1:
            out.append(0)
            continue
        if s <= 0 or s % size:
            return None
        out.append(s // size)
    # rows contiguous (a one-element row is, whatever its stride says)
    if arr.shape[perm[3]] > 1 and arr.strides[perm[3]] != size:
        return None
    return tuple(out) + (1,)


def empty(shape, layout, dtype):
    """A new dense array for library-order @shape in @layout's axis order,
    and its Converted form (for outputs)."""
    perm = LAYOUTS[layout]
    user_shape = [0] * 4
    for lib_axis, user_axis in enumerate(perm):
        user_shape[user_axis] = shape[lib_axis]
    arr = np.empty(user_shape, dtype=np.float32 if dtype == "float32" else np.float16)
    return Converted(arr, tuple(shape), dtype, _library_strides(arr, perm), None)


def give_back(arr, like, squeeze_batch, same_dtype=True):
    """@arr as the caller's kind (a torch tensor if @like came from torch,
    in its dtype when @same_dtype), without the batch axis if the inputs
    had none."""
    if squeeze_batch:
        arr = arr[0]
    if like.torch_dtype is None:
        return arr
    import torch
    out = torch.from_numpy(arr)
    if same_dtype and out.dtype != like.torch_dtype:
        out = out.to(like.torch_dtype)
    return out
