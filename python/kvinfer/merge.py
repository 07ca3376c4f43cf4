"""Merging attention states: the primitive behind split-KV, KV sequence parallelism and cascade attention.

A state is (v, s): v [seq, H, D] the attention output over a KV range, s [seq, H] its base-2
log-sum-exp (fp32). States with s = -inf (nothing attended) contribute nothing; all -inf gives 0, -inf.
"""
from . import _C
from ._arrays import Call


def _alloc(c, v, ndim, dims, dtype=None):
    """Output of shape [v.shape[i] for i in dims] when v has `ndim` dims, else an empty placeholder
    (the native checks then report v's shape)."""
    shape = tuple(v.shape)
    return c.empty([shape[i] for i in dims] if len(shape) == ndim else [0] * len(dims), dtype)


def merge_state(v_a, s_a, v_b, s_b, *, out=None, lse_out=None, stream=None):
    """Merge two states. Returns (v, s) as arrays of v_a's framework (out/lse_out if given)."""
    c = Call(v_a, stream)
    own_out, own_lse = out is None, lse_out is None
    if own_out:
        out = _alloc(c, v_a, 3, (0, 1, 2))
    if own_lse:
        lse_out = _alloc(c, v_a, 3, (0, 1), "float32")
    _C.merge_state(c.arg(v_a, "v_a"), c.arg(s_a, "s_a"), c.arg(v_b, "v_b"), c.arg(s_b, "s_b"),
                   c.dest(out, "out", own_out), c.dest(lse_out, "lse_out", own_lse), c.stream)
    c.finish()
    return out, lse_out


def merge_state_in_place(v, s, v_other, s_other, mask=None, *, stream=None):
    """(v, s) <- merge((v, s), (v_other, s_other)) on rows where mask[seq] is true (all rows if None)."""
    c = Call(v, stream)
    _C.merge_state_in_place(c.arg(v, "v", writable=True), c.arg(s, "s", writable=True),
                            c.arg(v_other, "v_other"), c.arg(s_other, "s_other"), c.arg(mask, "mask"), c.stream)
    c.finish()


def merge_states(v, s, *, indptr=None, out=None, lse_out=None, stream=None):
    """Merge over the state axis. Returns (v, s).

    Uniform: v [seq, num_states, H, D], s [seq, num_states, H].
    Ragged (split-KV partials): v [num_partials, H, D], s [num_partials, H] and indptr (int32,
    [seq + 1], on the device): row q merges partials indptr[q] .. indptr[q+1]-1 (none: 0 / -inf).
    """
    c = Call(v, stream)
    own_out, own_lse = out is None, lse_out is None
    if indptr is None:
        if own_out:
            out = _alloc(c, v, 4, (0, 2, 3))
        if own_lse:
            lse_out = _alloc(c, v, 4, (0, 2), "float32")
        _C.merge_states(c.arg(v, "v"), c.arg(s, "s"), c.dest(out, "out", own_out),
                        c.dest(lse_out, "lse_out", own_lse), c.stream)
    else:
        shape, seq = tuple(v.shape), max(int(indptr.shape[0]) - 1, 0)
        if own_out:
            out = c.empty((seq,) + shape[1:] if len(shape) == 3 else (0, 0, 0))
        if own_lse:
            lse_out = c.empty((seq, shape[1]) if len(shape) == 3 else (0, 0), "float32")
        _C.merge_states_ragged(c.arg(v, "v"), c.arg(s, "s"), c.arg(indptr, "indptr"), c.dest(out, "out", own_out),
                               c.dest(lse_out, "lse_out", own_lse), c.stream)
    c.finish()
    return out, lse_out
