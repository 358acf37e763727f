#!/usr/bin/env python3
"""Reads the models libpose wrote (tests/interop_writer.c) with the seed's PyTorch modules.

Each DIR/<kind>.safetensors is parsed with a small reader (Debian has no python3-safetensors),
its tensors loaded with load_state_dict(strict=True) into the seed module built from the file's
metadata, and the module's output on the recorded input compared with libpose's output at the
float32 tolerance of DESIGN.md. Exits 77 (ctest: skipped) when PyTorch is not installed.

    /usr/bin/python3 tests/interop_check.py DIR
"""
import json
import os
import struct
import sys

try:
    import torch
except ImportError:
    print("interop_check: PyTorch (Debian python3-torch) is not installed: skipped")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
import gen_fixtures as seed  # noqa: E402  (the seed's modules, verbatim)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{name}: libpose writes F32, found {info['dtype']}"
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def build(meta):
    kind = meta["kind"]
    m = {k: int(v) for k, v in meta.items() if v.isdigit()}
    if kind == "layer":
        return seed.POSELayer(m["dim"], m["skip_factor"], m["ff_dim"])
    if kind == "encoder":
        return seed.POSETransformerEncoder(m["dim"], m["ff_dim"], m["num_layers"], m["skip_factor"])
    if kind == "summarizer":
        return seed.POSESummarizer(m["vocab_size"], m["embed_dim"], m["num_layers"],
                                   m["skip_factor"])
    return seed.POSEMusicClassifier(m["input_dim"], m["hidden_dim"], m["num_layers"],
                                    m["skip_factor"], m["num_genres"])


def main():
    directory = sys.argv[1]
    failures = 0
    for kind in ("layer", "encoder", "summarizer", "classifier"):
        weights, meta = read_safetensors(os.path.join(directory, kind + ".safetensors"))
        io, _ = read_safetensors(os.path.join(directory, kind + ".io.safetensors"))
        model = build(meta).eval()
        model.load_state_dict(weights, strict=True)
        x = io["input"].long() if kind == "summarizer" else io["input"]
        with torch.no_grad():
            want = model(x)
        got = io["output"]
        try:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1.3e-6)
            print(f"{kind}: libpose file loads into the seed module; outputs agree "
                  f"(max |diff| {float((got - want).abs().max()):.2e})")
        except AssertionError as e:
            failures += 1
            print(f"{kind}: MISMATCH\n{e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
