"""Backend resolution ("auto" / "fa2" / "fa3") without a GPU, through the same function the single
functions and the wrappers call at plan time (tests/gpu/test_attention_backends.py covers sm90)."""
import pytest

import kvinfer
from _util import raises
from kvinfer import attention


def fa3_runs_here(d=128, dtype="bfloat16"):
    return attention._sm90_available(d, dtype, 0)


def test_auto_is_fa2_for_decode_and_custom_masks():
    assert attention._resolve_backend("auto", 128, "bfloat16", 0, decode=True) == "fa2"
    assert attention._resolve_backend("auto", 128, "bfloat16", 0, custom_mask=True) == "fa2"
    assert attention._resolve_backend("fa2", 128, "bfloat16", 0) == "fa2"


def test_auto_prefill_is_fa3_exactly_where_it_can_run():
    want = "fa3" if fa3_runs_here() else "fa2"
    assert attention._resolve_backend("auto", 128, "bfloat16", 0) == want
    # Unsupported head dims and dtypes never pick fa3.
    assert attention._resolve_backend("auto", 96, "bfloat16", 0) == "fa2"
    assert attention._resolve_backend("auto", 128, "float32", 0) == "fa2"


def test_environment_override(monkeypatch):
    monkeypatch.setenv("KVINFER_BACKEND", "fa2")
    assert attention._resolve_backend("auto", 128, "bfloat16", 0) == "fa2"


def test_bad_backend_names_and_forced_fa3():
    with raises(ValueError, "backend", "auto", "fa2", "fa3"):
        attention._resolve_backend("flash", 128, "bfloat16", 0)
    with raises(ValueError, "fa3", "custom mask"):
        attention._resolve_backend("fa3", 128, "bfloat16", 0, custom_mask=True)
    if not fa3_runs_here():
        with raises(ValueError, "fa3", "sm90"):
            attention._resolve_backend("fa3", 128, "bfloat16", 0)


@pytest.mark.parametrize("cls", ["BatchPrefillWithPagedKVCacheWrapper", "BatchPrefillWithRaggedKVCacheWrapper",
                                 "BatchDecodeWithPagedKVCacheWrapper"])
def test_wrappers_check_the_backend_name_at_construction(cls):
    np = pytest.importorskip("numpy")
    with raises(ValueError, "backend"):
        getattr(kvinfer, cls)(np.zeros(16, np.uint8), backend="fa4")


def test_decode_wrapper_rejects_fa3():
    np = pytest.importorskip("numpy")
    with raises(ValueError, "fa3", "decode"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(np.zeros(16, np.uint8), backend="fa3")
