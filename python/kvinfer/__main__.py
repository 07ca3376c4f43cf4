"""`python -m kvinfer info`: version, compiled archs, head dims, dtypes, kernel instances, GPUs."""
import argparse
import json
import sys

import kvinfer


def _print_info(as_json):
    d = kvinfer.info()
    if as_json:
        print(json.dumps(d, indent=1))
        return
    families = {}
    for inst in d["instances"]:
        families[inst["family"]] = families.get(inst["family"], 0) + 1
    print(f"kvinfer {d['version']}")
    print(f"  compiled archs : {', '.join('sm_' + a for a in d['cuda_archs'])}")
    print(f"  head dims      : {', '.join(map(str, d['head_dims']))}")
    print(f"  dtypes         : {', '.join(d['dtypes'])}")
    print(f"  kernel instances: {d['num_instances']} ("
          + ", ".join(f"{k}: {v}" for k, v in sorted(families.items())) + ")")
    if d["gpus"]:
        for i, g in enumerate(d["gpus"]):
            print(f"  GPU {i}          : {g}")
    else:
        print("  GPU            : none detected (no CUDA driver or device)")
    print(f"  C++ package    : {kvinfer.cmake_dir()}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kvinfer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="print build and device information")
    p.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "info":
        _print_info(a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
