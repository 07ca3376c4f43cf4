"""kvinfer: ahead-of-time compiled attention kernels for LLM serving.

Arrays are any objects with __dlpack__ (torch, jax, cupy; numpy for host index arrays); results
come back as arrays of the caller's framework, computed on the caller's current stream.
"""
import os as _os

from . import _C
from .merge import merge_state, merge_state_in_place, merge_states
from .page import append_paged_kv_cache
from .attention import single_decode_with_kv_cache, single_prefill_with_kv_cache
from .mask import pack_custom_mask
from .wrappers import (BatchDecodeWithPagedKVCacheWrapper, BatchPrefillWithPagedKVCacheWrapper,
                       BatchPrefillWithRaggedKVCacheWrapper, MultiLevelCascadeAttentionWrapper)

__version__ = _C.version()

__all__ = ["single_decode_with_kv_cache", "single_prefill_with_kv_cache", "BatchDecodeWithPagedKVCacheWrapper",
           "BatchPrefillWithPagedKVCacheWrapper", "BatchPrefillWithRaggedKVCacheWrapper",
           "MultiLevelCascadeAttentionWrapper", "merge_state", "merge_state_in_place", "merge_states",
           "append_paged_kv_cache", "pack_custom_mask", "info", "cuda_available", "cmake_dir", "__version__"]


def cuda_available():
    """True when a CUDA driver and at least one device are visible."""
    return _C.device_count() > 0


def info():
    """What this build compiled and what GPUs are visible (dict)."""
    from ._build_info import BUILD_INFO
    d = dict(BUILD_INFO)
    d["num_instances"] = len(d["instances"])
    d["gpus"] = [_C.device_description(i) for i in range(_C.device_count())]
    return d


def cmake_dir():
    """Directory holding kvinferConfig.cmake, for `cmake -Dkvinfer_DIR=...` in C++ projects."""
    return _os.path.join(_os.path.dirname(__file__), "lib", "cmake", "kvinfer")
