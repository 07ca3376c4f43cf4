"""Host-side planning (C++ planner): how a batch's KV is split across CTAs and merged back.

The batch decode wrapper (FA2-class kernels, next issue) calls this from plan(); it is public so
serving engines and tests can inspect a plan. Index arrays are host int32 arrays (numpy, CPU tensors).
"""
from . import _C

DEFAULT_MIN_CHUNK_TOKENS = 256


def plan_decode(kv_indptr, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size, *,
                target_ctas=None, min_chunk_tokens=DEFAULT_MIN_CHUNK_TOKENS):
    """Split each request's KV into chunks of `chunk_tokens` so (chunk x kv_head) CTAs fill the GPU.

    Returns a dict: chunk_tokens, work_request/work_kv_begin/work_kv_end/work_partial (int32, one
    entry per chunk, longest requests first; work_partial -1 = unsplit, writes the output directly),
    merge_indptr [batch+1] (partial states of each split request), num_partials, and the exact
    int/float workspace bytes the plan needs.
    """
    if target_ctas is None:  # two resident CTAs per SM; 132 SMs (H100/H200) when there is no GPU
        target_ctas = 2 * (_C.device_sm_count(0) if _C.device_count() else 132)
    return _C.plan_decode(kv_indptr, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
                          target_ctas, min_chunk_tokens)

