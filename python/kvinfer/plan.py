"""Host-side planning (C++ planner): how a batch's work is cut into CTA jobs, split and merged back.

The batch wrappers call the planner from plan(); these functions are public so serving engines and
tests can inspect a plan. Index arrays are host int32 arrays (numpy, CPU tensors).
"""
from . import _C
from .attention import _target_ctas
from .wrappers import _split_size

DEFAULT_MIN_CHUNK_TOKENS = 256


def plan_batch(qo_indptr, kv_indptr, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size, *,
               causal=False, tile_rows=0, target_ctas=None, min_chunk_tokens=DEFAULT_MIN_CHUNK_TOKENS,
               allow_split=True, out_elem_bytes=2, float_workspace_bytes=0, kv_indices=None, backend="fa2",
               fixed_split_size=None, lean_target_ctas=0, decode_tile="auto"):
    """The plan of a batch (kvinfer._C.Plan; .arrays() gives its work items as numpy arrays).

    qo_indptr None means one query token per request (decode); page_size 0 means a ragged KV whose
    kv_indptr holds token offsets. Work items are (request, qo_tile, kv_begin, kv_end, partial,
    splits, chunk, merge, qo_begin, qo_len, kv_len, kv_base), longest KV first; partial >= 0 marks a
    split request whose query token t writes partial row partial + t * splits, merged over
    merge_indptr (one range per query token): by the merge kernel, or (FA2 decode tile,
    plan.merge_in_kernel) by the last CTA of each split group, whose counter slot is `merge`. backend "fa3"
    plans for the Hopper kernels: 128-row query tiles, a persistent grid of at most target_ctas CTAs
    over (work item, kv head) pairs, and (paged) a page-offset region in the int workspace.
    fixed_split_size (KV tokens) replaces the planner's split length: a request then splits the same
    way in any batch, so its output does not depend on the batch (batch-invariant results).
    lean_target_ctas > 0 lets the planner take the lean decode tile (plan.lean_decode) where a grid of
    that many CTAs needs no split; the wrappers pass the device's value. decode_tile "wide" / "lean"
    overrides that choice (tests, experiments; "lean" plans split as a grid of lean_target_ctas needs).
    """
    if target_ctas is None:
        target_ctas = _target_ctas()
    return _C.plan_attention(qo_indptr, kv_indptr, kv_last_page_len, kv_indices, num_qo_heads, num_kv_heads,
                             head_dim, page_size, causal, tile_rows, target_ctas, min_chunk_tokens, allow_split,
                             out_elem_bytes, 0, 0, 0, 0, float_workspace_bytes, backend, 0,
                             _split_size(fixed_split_size), lean_target_ctas, decode_tile)


def plan_decode(kv_indptr, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size, *,
                target_ctas=None, min_chunk_tokens=DEFAULT_MIN_CHUNK_TOKENS):
    """The decode plan as a dict: chunk_tokens, work_* arrays (one entry per chunk, longest requests
    first; work_partial -1 = unsplit), merge_indptr [batch+1], num_partials, workspace bytes."""
    p = plan_batch(None, kv_indptr, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
                   tile_rows=16, target_ctas=target_ctas, min_chunk_tokens=min_chunk_tokens)
    d = p.arrays()
    d.update(chunk_tokens=p.chunk_tokens, num_partials=p.num_partials, int_workspace_bytes=p.int_workspace_bytes,
             float_workspace_bytes=p.float_workspace_bytes, num_work=p.num_work)
    return d
