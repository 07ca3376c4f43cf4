"""append_paged_kv_cache argument checks (C++), on host arrays: index arrays, layouts, strides."""
import numpy as np
import pytest

import kvinfer
from _util import raises


def args(nnz=5, pages=3, page_size=8, heads=4, dim=16, batch=2, layout="NHD", dtype=np.float16):
    cache_shape = (pages, 2, page_size, heads, dim) if layout == "NHD" else (pages, 2, heads, page_size, dim)
    return dict(
        append_key=np.ones((nnz, heads, dim), dtype), append_value=np.ones((nnz, heads, dim), dtype),
        batch_indices=np.zeros(nnz, np.int32), positions=np.arange(nnz, dtype=np.int32),
        paged_kv_cache=np.zeros(cache_shape, dtype), kv_indices=np.arange(pages, dtype=np.int32),
        kv_indptr=np.array([0, 2, 3][: batch + 1], np.int32), kv_last_page_len=np.ones(batch, np.int32),
        kv_layout=layout)


@pytest.mark.parametrize("name", ["batch_indices", "positions", "kv_indices", "kv_indptr", "kv_last_page_len"])
def test_index_arrays_must_be_int32(name):
    a = args()
    a[name] = a[name].astype(np.int64)
    with raises(TypeError, name, "int32", "int64"):
        kvinfer.append_paged_kv_cache(**a)


def test_index_arrays_must_be_contiguous():
    a = args()
    a["positions"] = np.arange(10, dtype=np.int32)[::2]
    with raises(ValueError, "positions", "contiguous"):
        kvinfer.append_paged_kv_cache(**a)


def test_index_array_lengths():
    a = args()
    a["batch_indices"] = a["batch_indices"][:4]
    with raises(ValueError, "batch_indices", "nnz"):
        kvinfer.append_paged_kv_cache(**a)
    a = args()
    a["kv_last_page_len"] = np.ones(3, np.int32)
    with raises(ValueError, "kv_last_page_len", "batch_size"):
        kvinfer.append_paged_kv_cache(**a)


def test_layout_string():
    a = args()
    a["kv_layout"] = "NDH"
    with raises(ValueError, "kv_layout", "NHD", "HND"):
        kvinfer.append_paged_kv_cache(**a)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_heads_and_head_dim_must_match_the_cache(layout):
    a = args(layout=layout)
    a["append_key"] = np.ones((5, 3, 16), np.float16)
    with raises(ValueError, "append_key", "num_kv_heads of the cache (4)"):
        kvinfer.append_paged_kv_cache(**a)


def test_dtype_must_match_the_cache():
    a = args()
    a["append_value"] = a["append_value"].astype(np.float32)
    with raises(TypeError, "append_value", "float16"):
        kvinfer.append_paged_kv_cache(**a)


def test_cache_shape():
    a = args()
    a["paged_kv_cache"] = a["paged_kv_cache"][:, :1]
    with raises(ValueError, "paged_kv_cache", "[num_pages, 2, page_size"):
        kvinfer.append_paged_kv_cache(**a)


def test_head_dim_axis_needs_unit_stride():
    a = args()
    big = np.zeros((3, 2, 8, 4, 32), np.float16)
    a["paged_kv_cache"] = big[..., ::2]
    with raises(ValueError, "k_cache", "stride 1"):
        kvinfer.append_paged_kv_cache(**a)


def test_strided_cache_passes_checks_up_to_the_device():
    a = args()
    layers = np.zeros((3, 4, 2, 8, 4, 16), np.float16)  # [pages, layers, 2, page_size, H, D]
    a["paged_kv_cache"] = layers[:, 1]
    with raises(ValueError, "CUDA device", "cpu"):
        kvinfer.append_paged_kv_cache(**a)
