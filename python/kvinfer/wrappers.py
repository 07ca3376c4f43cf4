"""Batch attention wrappers with plan()/run() (FlashInfer's vocabulary, so switching is an import change).

plan() takes host index arrays, runs the C++ planner (query tiles, split-KV for long requests,
longest work first) and uploads everything run() needs into the int workspace with one async copy;
it never waits for the GPU. run() only launches: the attention kernel and, when the plan split a
request's KV, the merge of its partial states (partials live in `float_workspace_buffer`).

With use_cuda_graph=True every buffer, offset and the grid are fixed at construction, so run() can be
captured once and replayed after each new plan() (same q shape; lengths and splits may change).
Workspaces are device uint8 arrays of a framework with mutable arrays (torch, cupy).
"""
import os

import numpy as np

from . import _C
from ._arrays import Call, framework_of, on_host
from .attention import _MIN_CHUNK_TOKENS, _check_pos_encoding, _device_index, _launch_choice, _options
from .mask import pack_custom_mask
from .page import split_paged_kv_cache

INT_WORKSPACE_BYTES = 8 << 20
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2}


def _host_int32(x, name):
    """Host int32 numpy view of an index array (device arrays are copied: that waits for the GPU)."""
    if x is None:
        return None
    if type(x) is np.ndarray and x.dtype == np.int32 and x.flags.c_contiguous:  # the common case, per step
        return x
    fw = framework_of(x)
    if fw == "torch":
        x = x.detach().cpu().numpy() if x.is_cuda else x.numpy()
    elif fw == "cupy":
        import cupy
        x = cupy.asnumpy(x)
    elif fw == "jax":
        x = np.asarray(x)
    x = np.asarray(x)
    if x.dtype != np.int32:
        raise TypeError(f"{name}: expected int32 indices, got {x.dtype}")
    return np.ascontiguousarray(x)


def _host_uint8(x):
    """Host uint8 numpy array of a packed mask given on the host."""
    x = x.numpy() if framework_of(x) == "torch" else np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"packed_custom_mask: expected uint8 bits, got {x.dtype}")
    return np.ascontiguousarray(x)


def _dtype_name(dt):
    """'float16' / 'bfloat16' / ... for a torch, numpy or string dtype (None stays None)."""
    if dt is None:
        return None
    name = getattr(dt, "__name__", None) or str(dt).split(".")[-1]  # numpy scalar types are classes
    return {"half": "float16", "bf16": "bfloat16", "fp16": "float16"}.get(name, name)


def _dtype_bytes(dt):
    if dt is None:
        return 2
    name = _dtype_name(dt)
    if name not in _DTYPE_BYTES:
        raise TypeError(f"q_data_type: expected float16 or bfloat16, got {dt}")
    return _DTYPE_BYTES[name]


def _split_size(fixed_split_size):
    """plan(fixed_split_size=...): KV tokens per split chunk (None: the planner's choice)."""
    if fixed_split_size is None:
        return 0
    n = int(fixed_split_size)
    if n != fixed_split_size or n < 1:
        raise ValueError(f"fixed_split_size: expected a positive number of KV tokens or None, got {fixed_split_size!r}")
    return n


class _BatchAttention:
    """Shared machinery of the batch wrappers: workspaces, planning, upload, run.

    backend: "auto" (the Hopper kernels on sm90 devices for prefill plans without a custom mask, else
    the FA2-class kernels), "fa2" or "fa3" (forced; plan() raises ValueError when it cannot run).
    enable_pdl: launch the FA2-class kernels with programmatic dependent launch on sm90+ devices (they
    start during the previous kernel's tail and wait for it before reading its outputs; same results).
    """

    _paged = True
    _tile_rows = 0  # 0: the planner picks (16-row decode tile when every request fits)
    _decode_tile = "auto"  # the planner's wide / lean decode tile choice ("wide" / "lean": tests, experiments)

    def __init__(self, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, *, capacity_batch=0,
                 capacity_rows=0, kv_indices_buffer=None, int_workspace_bytes=INT_WORKSPACE_BYTES, backend="auto",
                 enable_pdl=True):
        if backend not in ("auto", "fa2", "fa3"):
            raise ValueError(f"backend: expected \"auto\", \"fa2\" or \"fa3\", got {backend!r}")
        self._backend = backend
        self._pdl = bool(enable_pdl)
        if kv_layout not in ("NHD", "HND"):
            raise ValueError(f"kv_layout: expected \"NHD\" or \"HND\", got {kv_layout!r}")
        if framework_of(float_workspace_buffer) not in ("torch", "cupy", "dlpack"):
            raise TypeError("float_workspace_buffer: expected a device array of torch or cupy (the wrappers write "
                            "into their workspaces; JAX arrays are immutable: use the single_* functions)")
        self._float_ws = float_workspace_buffer
        self._int_ws = Call(float_workspace_buffer).empty((int_workspace_bytes,), "uint8")
        self._layout = kv_layout
        self._graph = bool(use_cuda_graph)
        self._capacity_batch = int(capacity_batch)
        self._capacity_rows = int(capacity_rows)
        self._indices_buf = kv_indices_buffer
        if self._graph and (self._capacity_batch <= 0 or self._capacity_rows <= 0):
            raise ValueError("use_cuda_graph=True needs the batch capacity (index buffers or max sizes) at construction")
        if self._graph and self._paged and kv_indices_buffer is None:
            raise ValueError("use_cuda_graph=True needs paged_kv_indices_buffer at construction (its pointer is "
                             "captured by the graph)")
        self._plan = None
        self._indices = None
        self._graph_options = None
        self._q_dtype_name = None

    @property
    def float_workspace_bytes(self):
        ws = self._float_ws
        return int(np.prod(ws.shape)) * int(getattr(ws, "itemsize", None) or ws.element_size())

    def _do_plan(self, qo_indptr, kv_indptr, kv_indices, kv_last_page_len, num_qo_heads, num_kv_heads, head_dim,
                 page_size, causal, pos_encoding_mode, window_left, logits_soft_cap, sm_scale, q_data_type,
                 kv_data_type, custom_mask, packed_custom_mask, validate, stream, fixed_split_size=None,
                 disable_split_kv=False):
        _check_pos_encoding(pos_encoding_mode)
        options = (bool(causal),) + _options(sm_scale, logits_soft_cap, window_left)
        if self._graph:
            # The captured kernels bake in these options; only lengths and page tables may change.
            if custom_mask is not None or packed_custom_mask is not None:
                raise ValueError("custom_mask: not supported with use_cuda_graph=True (the mask buffer would be "
                                 "captured); use causal / window_left or a non-graph wrapper")
            if self._graph_options is not None and options != self._graph_options:
                raise ValueError("plan: causal, sm_scale, logits_soft_cap and window_left are fixed by the first "
                                 "plan() of a use_cuda_graph=True wrapper (a captured run() uses them)")
            self._graph_options = options
        self._q_dtype_name = _dtype_name(q_data_type)
        if kv_data_type is not None and q_data_type is not None and _dtype_name(kv_data_type) != self._q_dtype_name:
            raise TypeError(f"kv_data_type: {kv_data_type} differs from q_data_type {q_data_type}; this build's "
                            "kernels take K/V in the query dtype")
        qo = _host_int32(qo_indptr, "qo_indptr")
        kvp = _host_int32(kv_indptr, "kv_indptr")
        last = _host_int32(kv_last_page_len, "kv_last_page_len")
        host_indices = None
        if self._paged and (validate or on_host(kv_indices)):
            host_indices = _host_int32(kv_indices, "kv_indices")
        c = Call(self._float_ws, stream)
        dev = _device_index(self._float_ws)
        qdt = q_data_type or "float16"
        be, target, lean_target = _launch_choice(self._backend, int(head_dim), qdt, dev,
                                    custom_mask is not None or packed_custom_mask is not None, self._tile_rows == 16,
                                    os.environ.get("KVINFER_BACKEND"))
        if self._graph and getattr(self, "_graph_backend", be) != be:
            raise ValueError("plan: the backend of a use_cuda_graph=True wrapper is fixed by its first plan()")
        self._graph_backend = be
        graph_grid = target if self._graph else 0
        cap_pages = int(self._indices_buf.shape[0]) if (self._graph and self._paged) else 0
        self._plan = _C.plan_attention(
            qo, kvp, last, host_indices if validate else None, int(num_qo_heads), int(num_kv_heads), int(head_dim),
            int(page_size) if self._paged else 0, bool(causal),
            self._tile_rows or (64 if self._graph else 0),  # graph mode: one tile for every plan
            target, _MIN_CHUNK_TOKENS, not disable_split_kv, _dtype_bytes(q_data_type),
            self._capacity_batch, self._capacity_rows, graph_grid,
            int(self._int_ws.shape[0]) if self._graph else 0,  # graph mode: the captured buffer must suffice
            self.float_workspace_bytes, be, cap_pages, _split_size(fixed_split_size), lean_target,
            self._decode_tile)
        if self._plan.int_workspace_bytes > int(self._int_ws.shape[0]):  # grows (never in graph mode)
            self._int_ws = Call(self._float_ws).empty((self._plan.int_workspace_bytes * 5 // 4,), "uint8")
        _C.upload_plan(self._plan, c.dest(self._int_ws, "int_workspace", True), c.stream)
        if self._paged:
            self._indices = self._stage_indices(kv_indices, host_indices, c)
        self._causal, self._sm, self._cap, self._wl = options
        if custom_mask is not None and packed_custom_mask is None:
            packed_custom_mask = pack_custom_mask(custom_mask, c)
        if packed_custom_mask is not None and on_host(packed_custom_mask):
            packed_custom_mask = c.upload(_host_uint8(packed_custom_mask), name="packed_custom_mask")
        self._mask = packed_custom_mask

    def _stage_indices(self, kv_indices, host_indices, c):
        """Device page ids: the caller's device array, or a copy (graph mode: into the fixed buffer)."""
        if self._graph:
            n = int(kv_indices.shape[0])
            if n > int(self._indices_buf.shape[0]):
                raise ValueError(f"kv_indices: {n} pages exceed paged_kv_indices_buffer ({self._indices_buf.shape[0]})")
            if host_indices is not None:
                c.upload(host_indices, self._indices_buf, "paged_kv_indices_buffer")
            elif kv_indices is not self._indices_buf:
                _C.copy_async(c.dest(self._indices_buf, "paged_kv_indices_buffer", True), c.arg(kv_indices, "kv_indices"),
                              c.stream)
            return self._indices_buf
        return c.upload(host_indices, name="kv_indices") if host_indices is not None else kv_indices

    def _run(self, q, k, v, out, lse, return_lse, stream):
        if self._plan is None:
            raise RuntimeError("run() before plan(): call plan() with this batch's index arrays first")
        c = Call(q, stream)
        if self._q_dtype_name and not str(q.dtype).endswith(self._q_dtype_name):
            raise TypeError(f"q: dtype {q.dtype} differs from the q_data_type given to plan() ({self._q_dtype_name})")
        shape = tuple(q.shape)
        own_out = out is None
        if own_out:
            out = c.empty(shape)
        own_lse = lse is None and return_lse
        if own_lse:
            lse = c.empty(shape[:2], "float32")
        _C.batch_attention(self._plan, c.arg(q, "q"), c.arg(k, "k_cache"), c.arg(v, "v_cache"),
                           c.arg(self._indices, "kv_indices") if self._paged else None,
                           c.dest(out, "out", own_out), c.dest(lse, "lse", own_lse) if lse is not None else None,
                           c.arg(self._mask, "packed_custom_mask"), c.dest(self._int_ws, "int_workspace", True),
                           c.dest(self._float_ws, "float_workspace_buffer", True), self._layout, self._causal,
                           self._wl, self._sm, self._cap, c.stream, self._pdl)
        c.finish()
        return (out, lse) if return_lse else out

    @property
    def plan_info(self):
        """The current plan (kvinfer._C.Plan): work items, splits, workspace bytes."""
        return self._plan


def _prefill_capacity(use_cuda_graph, qo_indptr_buf, max_num_qo_tokens):
    """(batch, query rows) capacity of a CUDA-graph prefill wrapper; (0, 0) without graphs."""
    if not use_cuda_graph:
        return 0, 0
    if qo_indptr_buf is None or max_num_qo_tokens is None:
        raise ValueError("use_cuda_graph=True needs qo_indptr_buf (batch capacity) and max_num_qo_tokens")
    return int(qo_indptr_buf.shape[0]) - 1, int(max_num_qo_tokens)


class _PagedAttention(_BatchAttention):
    """Batch attention over a paged cache: run() takes the cache ([pages, 2, ...] or a (k, v) pair)."""

    def run(self, q, paged_kv_cache, *, out=None, lse=None, return_lse=False, stream=None):
        k, v = split_paged_kv_cache(paged_kv_cache)
        return self._run(q, k, v, out, lse, return_lse, stream)

    forward = run


class BatchDecodeWithPagedKVCacheWrapper(_PagedAttention):
    """Decode (one query token per request) over a paged KV cache; q is [batch, H_qo, D]."""

    _tile_rows = 16

    def __init__(self, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, use_tensor_cores=True,
                 paged_kv_indptr_buffer=None, paged_kv_indices_buffer=None, paged_kv_last_page_len_buffer=None,
                 backend="auto", enable_pdl=True):
        if backend == "fa3":
            raise ValueError("backend: \"fa3\" is a prefill path; decode runs on \"fa2\" (or \"auto\")")
        batch = 0
        if use_cuda_graph:
            if paged_kv_indptr_buffer is None:
                raise ValueError("use_cuda_graph=True needs paged_kv_indptr_buffer (its length - 1 is the batch size)")
            batch = int(paged_kv_indptr_buffer.shape[0]) - 1
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph, capacity_batch=batch, capacity_rows=batch,
                         kv_indices_buffer=paged_kv_indices_buffer, backend=backend, enable_pdl=enable_pdl)

    def plan(self, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
             pos_encoding_mode="NONE", window_left=-1, logits_soft_cap=None, q_data_type="float16",
             kv_data_type=None, sm_scale=None, rope_scale=None, rope_theta=None, *, validate=False, stream=None,
             fixed_split_size=None, disable_split_kv=False):
        self._do_plan(None, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size, False,
                      pos_encoding_mode, window_left, logits_soft_cap, sm_scale, q_data_type, kv_data_type, None,
                      None, validate, stream, fixed_split_size, disable_split_kv)

    begin_forward = plan


class BatchPrefillWithPagedKVCacheWrapper(_PagedAttention):
    """Prefill / append (many query tokens per request) over a paged KV cache; q is [qo_indptr[-1], H_qo, D]."""

    def __init__(self, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, qo_indptr_buf=None,
                 paged_kv_indptr_buf=None, paged_kv_indices_buf=None, paged_kv_last_page_len_buf=None,
                 max_num_qo_tokens=None, backend="auto", enable_pdl=True):
        batch, rows = _prefill_capacity(use_cuda_graph, qo_indptr_buf, max_num_qo_tokens)
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph, capacity_batch=batch, capacity_rows=rows,
                         kv_indices_buffer=paged_kv_indices_buf, backend=backend, enable_pdl=enable_pdl)

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
             head_dim_qk, page_size, head_dim_vo=None, custom_mask=None, packed_custom_mask=None, causal=False,
             pos_encoding_mode="NONE", window_left=-1, logits_soft_cap=None, sm_scale=None, rope_scale=None,
             rope_theta=None, q_data_type="float16", kv_data_type=None, *, validate=False, stream=None,
             fixed_split_size=None, disable_split_kv=False):
        if head_dim_vo is not None and head_dim_vo != head_dim_qk:
            raise ValueError("head_dim_vo: must equal head_dim_qk in this build")
        self._do_plan(qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads,
                      num_kv_heads, head_dim_qk, page_size, causal, pos_encoding_mode, window_left, logits_soft_cap,
                      sm_scale, q_data_type, kv_data_type, custom_mask, packed_custom_mask, validate, stream,
                      fixed_split_size, disable_split_kv)

    begin_forward = plan


class BatchPrefillWithRaggedKVCacheWrapper(_BatchAttention):
    """Prefill over a ragged KV: k/v [kv_indptr[-1], H_kv, D] (NHD) or [H_kv, kv_indptr[-1], D] (HND)."""

    _paged = False

    def __init__(self, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, qo_indptr_buf=None,
                 kv_indptr_buf=None, max_num_qo_tokens=None, backend="auto", enable_pdl=True):
        batch, rows = _prefill_capacity(use_cuda_graph, qo_indptr_buf, max_num_qo_tokens)
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph, capacity_batch=batch, capacity_rows=rows,
                         backend=backend, enable_pdl=enable_pdl)

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim_qk, head_dim_vo=None, custom_mask=None,
             packed_custom_mask=None, causal=False, pos_encoding_mode="NONE", window_left=-1, logits_soft_cap=None,
             sm_scale=None, rope_scale=None, rope_theta=None, q_data_type="float16", kv_data_type=None, *,
             stream=None, fixed_split_size=None, disable_split_kv=False):
        if head_dim_vo is not None and head_dim_vo != head_dim_qk:
            raise ValueError("head_dim_vo: must equal head_dim_qk in this build")
        self._do_plan(qo_indptr, kv_indptr, None, None, num_qo_heads, num_kv_heads, head_dim_qk, 0, causal,
                      pos_encoding_mode, window_left, logits_soft_cap, sm_scale, q_data_type, kv_data_type,
                      custom_mask, packed_custom_mask, False, stream, fixed_split_size, disable_split_kv)

    begin_forward = plan

    def run(self, q, k, v, *, out=None, lse=None, return_lse=False, stream=None):
        return self._run(q, k, v, out, lse, return_lse, stream)

    forward = run


class MultiLevelCascadeAttentionWrapper:
    """Cascade (shared-prefix) attention over a paged cache with `num_levels` levels.

    Level i has its own qo_indptr / page table: level 0 typically maps all queries of a group of
    requests to their shared prefix pages, the last level to each request's own pages. Each level's
    attention (with LSE) is merged into the running result with merge_state_in_place. `causal`
    applies to the last level only (the prefix levels lie entirely before every query).
    """

    def __init__(self, num_levels, float_workspace_buffer, kv_layout="NHD", backend="auto"):
        if num_levels < 1:
            raise ValueError(f"num_levels: expected >= 1, got {num_levels}")
        self._levels = [BatchPrefillWithPagedKVCacheWrapper(float_workspace_buffer, kv_layout, backend=backend)
                        for _ in range(num_levels)]

    def plan(self, qo_indptr_arr, paged_kv_indptr_arr, paged_kv_indices_arr, paged_kv_last_page_len, num_qo_heads,
             num_kv_heads, head_dim, page_size, causal=False, pos_encoding_mode="NONE", window_left=-1,
             logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None, q_data_type="float16",
             kv_data_type=None, *, stream=None):
        n = len(self._levels)
        for name, arr in (("qo_indptr_arr", qo_indptr_arr), ("paged_kv_indptr_arr", paged_kv_indptr_arr),
                          ("paged_kv_indices_arr", paged_kv_indices_arr),
                          ("paged_kv_last_page_len", paged_kv_last_page_len)):
            if len(arr) != n:
                raise ValueError(f"{name}: expected one array per level ({n}), got {len(arr)}")
        if q_data_type is None:
            raise TypeError("q_data_type: required")
        for i, w in enumerate(self._levels):
            w.plan(qo_indptr_arr[i], paged_kv_indptr_arr[i], paged_kv_indices_arr[i], paged_kv_last_page_len[i],
                   num_qo_heads, num_kv_heads, head_dim, page_size, causal=causal and i == n - 1,
                   pos_encoding_mode=pos_encoding_mode, window_left=window_left, logits_soft_cap=logits_soft_cap,
                   sm_scale=sm_scale, q_data_type=q_data_type, kv_data_type=kv_data_type, stream=stream)

    begin_forward = plan

    def run(self, q, paged_kv_cache, *, return_lse=False, stream=None):
        from .merge import merge_state_in_place
        out, lse = self._levels[0].run(q, paged_kv_cache, return_lse=True, stream=stream)
        for w in self._levels[1:]:
            o_i, s_i = w.run(q, paged_kv_cache, return_lse=True, stream=stream)
            merge_state_in_place(out, lse, o_i, s_i, stream=stream)
        return (out, lse) if return_lse else out

    forward = run
