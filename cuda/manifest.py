#!/usr/bin/env python3
"""The instance manifest: the single source of truth for what kvinfer compiles.

Run by CMake at configure time. From the build options (archs, head dims, dtypes) it writes into
--out:
  instances/<name>.cu   one explicit instantiation per file, named after its parameters
  instances.cmake       the list of instance files and the archs each is built for
  dispatch_<family>.inc the (parameters) -> launcher table of each family, compiled into cpp/src/dispatch.cpp
  _build_info.py        installed as kvinfer._build_info, read by `kvinfer info` and the tests
Files are only rewritten when their content changes, so re-configuring does not rebuild everything.
"""
import argparse
import json
import os
import sys

# Dtype names used in options -> C++ DType enumerators.
DTYPES = {"fp16": "kF16", "bf16": "kBF16", "fp32": "kF32"}
ATTN_DTYPES = ("fp16", "bf16")
MERGE_DTYPES = ("fp16", "bf16", "fp32")   # merge kernels also take fp32 partial outputs
KNOWN_ARCHS = ("80", "86", "89", "90", "90a")
FAMILIES = ("merge", "append_kv", "attention", "attention_sm90")


def split_list(s):
    return [x for x in s.replace(",", ";").split(";") if x]


def merge_instances(archs):
    """State-merge kernels: one instance per value dtype; head dim is a run-time parameter."""
    out = []
    for dt in MERGE_DTYPES:
        out.append(dict(
            family="merge",
            name=f"merge_{dt}",
            params={"dtype": dt},
            archs=archs,
            include="merge/merge_launch.cuh",
            instantiate=f"template cudaError_t launch_merge<DType::{DTYPES[dt]}>(const MergeParams&, cudaStream_t);",
            dispatch=f"KVINFER_MERGE_INSTANCE(DType::{DTYPES[dt]})",
        ))
    return out


def append_kv_instances(archs):
    """Paged-cache append: a copy, so one instance per element size (2: fp16/bf16, 1: fp8 caches)."""
    return [dict(
        family="append_kv",
        name=f"append_kv_{b}byte",
        params={"elem_bytes": b},
        archs=archs,
        include="page/append_kv_launch.cuh",
        instantiate=f"template cudaError_t launch_append_kv<{b}>(const AppendKVParams&, cudaStream_t);",
        dispatch=f"KVINFER_APPEND_KV_INSTANCE({b})",
    ) for b in (2, 1)]


def attention_instances(archs, head_dims, dtypes):
    """FA2-class attention (cuda/sm80): one instance per (head dim, dtype, tile). Masks, soft cap,
    window, scale, KV layout and paging are run-time parameters (DESIGN.md section 4)."""
    out = []
    for d in head_dims:
        for dt in dtypes:
            for tile, tile_enum in (("decode", "AttnTile::kDecode"), ("decode_lean", "AttnTile::kDecodeLean"),
                                    ("prefill", "AttnTile::kPrefill")):
                out.append(dict(
                    family="attention",
                    name=f"attention_sm80_d{d}_{dt}_{tile}",
                    params={"backend": "fa2", "head_dim": d, "dtype": dt, "tile": tile},
                    archs=archs,
                    include="sm80/attention_launch.cuh",
                    instantiate=(f"template cudaError_t launch_attention<{d}, DType::{DTYPES[dt]}, {tile_enum}>"
                                 "(const AttnParams&, cudaStream_t);\n"
                                 f"template int attention_ctas_per_sm<{d}, DType::{DTYPES[dt]}, {tile_enum}>();"),
                    dispatch=f"KVINFER_ATTENTION_INSTANCE({d}, DType::{DTYPES[dt]}, {tile_enum})",
                ))
    return out


def attention_sm90_instances(archs, head_dims, dtypes):
    """Hopper attention (cuda/sm90, wgmma + setmaxnreg: sm_90a only): one instance per (head dim,
    dtype, KV tile), built when 90a is among the archs. Causal, window, soft cap, scale, layout and paging
    are run-time parameters; custom masks run on the FA2-class kernels."""
    if "90a" not in archs:
        return []
    out = []
    for d in head_dims:
        for dt in dtypes:
            for kv in sm90_kv_tiles(d):
                suffix = "" if kv == sm90_kv_tiles(d)[0] else f"_kv{kv}"
                out.append(dict(
                    family="attention_sm90",
                    name=f"attention_sm90_d{d}_{dt}{suffix}",
                    params={"backend": "fa3", "head_dim": d, "dtype": dt, "kv_tile": kv},
                    archs=["90a"],
                    include="sm90/attention_launch.cuh",
                    instantiate=(f"template cudaError_t launch_attention_sm90<{d}, {kv}, DType::{DTYPES[dt]}>"
                                 "(const AttnParams&, cudaStream_t);"),
                    dispatch=f"KVINFER_ATTENTION_SM90_INSTANCE({d}, DType::{DTYPES[dt]}, {kv})",
                ))
    return out


def sm90_kv_tiles(d):
    """KV tokens per tile of the Hopper instances of head dim d (sm90_kv_rows in cpp/src/launch.h): the
    default first; head dims 64 and 256 also have a wide tile the planner picks for long KV."""
    return {64: (128, 192), 128: (128,), 256: (64, 80)}[d]


def build_manifest(archs, head_dims, dtypes):
    for a in archs:
        if a not in KNOWN_ARCHS:
            sys.exit(f"manifest: unknown arch {a!r} in KVINFER_CUDA_ARCHS (known: {', '.join(KNOWN_ARCHS)})")
    for d in dtypes:
        if d not in ATTN_DTYPES:
            sys.exit(f"manifest: unknown dtype {d!r} in KVINFER_DTYPES (known: {', '.join(ATTN_DTYPES)})")
    for h in head_dims:
        if h not in (64, 128, 256):
            sys.exit(f"manifest: head dim {h} in KVINFER_HEAD_DIMS is not supported (64, 128, 256)")
    return (merge_instances(archs) + append_kv_instances(archs) + attention_instances(archs, head_dims, dtypes)
            + attention_sm90_instances(archs, head_dims, dtypes))


def write_if_changed(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--archs", default="80;90a")
    ap.add_argument("--head-dims", default="64;128;256")
    ap.add_argument("--dtypes", default="fp16;bf16")
    ap.add_argument("--version", default="0.0.0")
    a = ap.parse_args()
    archs = split_list(a.archs)
    head_dims = sorted(int(h) for h in split_list(a.head_dims))
    dtypes = split_list(a.dtypes)
    insts = build_manifest(archs, head_dims, dtypes)

    inst_dir = os.path.join(a.out, "instances")
    cmake_entries = []
    for i in insts:
        src = os.path.join(inst_dir, i["name"] + ".cu")
        write_if_changed(src, (
            f"// Generated by cuda/manifest.py: {i['family']} {json.dumps(i['params'])}. Do not edit.\n"
            f"#include \"{i['include']}\"\n"
            f"namespace kvinfer::detail {{\n{i['instantiate']}\n}}  // namespace kvinfer::detail\n"))
        cmake_entries.append(f"{src}|{','.join(i['archs'])}")
    # Remove stale instances of an earlier configuration.
    keep = {i["name"] + ".cu" for i in insts}
    for f in os.listdir(inst_dir):
        if f.endswith(".cu") and f not in keep:
            os.remove(os.path.join(inst_dir, f))

    write_if_changed(os.path.join(a.out, "instances.cmake"),
                     "set(KVINFER_INSTANCES\n" + "".join(f"  \"{e}\"\n" for e in cmake_entries) + ")\n")
    for fam in FAMILIES:  # one table per family: dispatch_<family>.inc, possibly empty
        write_if_changed(os.path.join(a.out, f"dispatch_{fam}.inc"),
                         "// Generated by cuda/manifest.py. Do not edit.\n"
                         + "".join(i["dispatch"] + "\n" for i in insts if i["family"] == fam))
    info = {
        "version": a.version,
        "cuda_archs": archs,
        "head_dims": head_dims,
        "dtypes": dtypes,
        "instances": [{k: i[k] for k in ("family", "name", "params", "archs")} for i in insts],
    }
    write_if_changed(os.path.join(a.out, "_build_info.py"),
                     "# Generated by cuda/manifest.py at configure time. Do not edit.\n"
                     f"BUILD_INFO = {json.dumps(info, indent=1)}\n")
    write_if_changed(os.path.join(a.out, "build_info.inc"),
                     "// Generated by cuda/manifest.py. Do not edit.\n"
                     f"#define KVINFER_BUILD_INFO_JSON {json.dumps(json.dumps(info))}\n"
                     f"#define KVINFER_NUM_INSTANCES {len(insts)}\n"
                     f"#define KVINFER_VERSION \"{a.version}\"\n")


if __name__ == "__main__":
    main()
