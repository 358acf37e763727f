#!/usr/bin/python3
"""Runs pose_bench's cases with the seed's PyTorch modules and prints both side by side.

    /usr/bin/python3 bench/compare_torch.py [--pose-bench PATH] [pose_bench options]

Every option this script does not know is passed to pose_bench (run with --json), so the case
list is pose_bench's own: `compare_torch.py --seq-lens 10000` compares the slide 8 case,
`compare_torch.py --sweep` the slide 13 sweep, `compare_torch.py --models --batch 2` the seed's
models. Each case then runs in PyTorch in a fresh subprocess at the same thread count
(torch.set_num_threads) for the same number of timed repetitions after one warm-up, under
torch.no_grad(), and reports the median time and the peak memory growth of the forward call
(ru_maxrss after the warm-up call minus the resident size just before it; a fresh process per
case, so one case's peak cannot hide the next one's).

Memory columns: pose_mem is libpose's scratch (workspace_bytes) plus the output tensor, and
torch_mem is the resident-memory growth of PyTorch's forward, which also holds its output, so
the two count the same things.

PyTorch is optional: without it this script says so and exits 0.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# Seed modules are copied verbatim below (slides 1, 3, 4, 6, 8, 9, 10, 11), so the comparison
# is against the code the technique was described with, not a tuned re-implementation. They are
# defined inside a function because `torch` may be missing; see seed_modules().


def seed_modules():
    import torch
    import torch.nn as nn

    # ---- slide 1 -------------------------------------------------------------------------
    class POSEAttention(nn.Module):
        def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0., proj_drop=0.):
            super().__init__()
            self.num_heads = num_heads
            head_dim = dim // num_heads
            self.scale = head_dim ** -0.5

            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.attn_drop = nn.Dropout(attn_drop)
            self.proj = nn.Linear(dim, dim)
            self.proj_drop = nn.Dropout(proj_drop)

        def forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]

            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            attn = self.attn_drop(attn)

            x = (attn @ v).transpose(1, 2).reshape(B, N, C)
            x = self.proj(x)
            x = self.proj_drop(x)
            return x

    # ---- slide 3 -------------------------------------------------------------------------
    class SkipWiseAttention(nn.Module):
        def __init__(self, dim, skip_factor):
            super().__init__()
            self.dim = dim
            self.skip_factor = skip_factor
            self.query = nn.Linear(dim, dim)
            self.key = nn.Linear(dim, dim)
            self.value = nn.Linear(dim, dim)

        def forward(self, x):
            seq_len = x.size(1)
            attend_positions = torch.arange(0, seq_len, self.skip_factor)

            q = self.query(x)
            k = self.key(x[:, attend_positions, :])
            v = self.value(x[:, attend_positions, :])

            attn = torch.matmul(q, k.transpose(-2, -1)) / (self.dim ** 0.5)
            attn = torch.softmax(attn, dim=-1)

            return torch.matmul(attn, v)

    # ---- slide 4 -------------------------------------------------------------------------
    class AdaptiveSkipAttention(nn.Module):
        def __init__(self, dim, max_seq_len):
            super().__init__()
            self.dim = dim
            self.max_seq_len = max_seq_len
            self.query = nn.Linear(dim, dim)
            self.key = nn.Linear(dim, dim)
            self.value = nn.Linear(dim, dim)

        def forward(self, x):
            seq_len = x.size(1)
            skip_factor = max(1, seq_len // (self.max_seq_len // 10))  # Adaptive skip factor

            attend_positions = torch.arange(0, seq_len, skip_factor)

            q = self.query(x)
            k = self.key(x[:, attend_positions, :])
            v = self.value(x[:, attend_positions, :])

            attn = torch.matmul(q, k.transpose(-2, -1)) / (self.dim ** 0.5)
            attn = torch.softmax(attn, dim=-1)

            return torch.matmul(attn, v)

    # ---- slide 6 -------------------------------------------------------------------------
    class POSELayer(nn.Module):
        def __init__(self, dim, skip_factor, ff_dim, dropout=0.1):
            super().__init__()
            self.attn = SkipWiseAttention(dim, skip_factor)
            self.ff = nn.Sequential(
                nn.Linear(dim, ff_dim),
                nn.ReLU(),
                nn.Linear(ff_dim, dim)
            )
            self.norm1 = nn.LayerNorm(dim)
            self.norm2 = nn.LayerNorm(dim)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            attn_output = self.attn(x)
            x = self.norm1(x + self.dropout(attn_output))
            ff_output = self.ff(x)
            x = self.norm2(x + self.dropout(ff_output))
            return x

    # ---- slide 8 -------------------------------------------------------------------------
    class StandardAttention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.attn = nn.MultiheadAttention(dim, num_heads=8)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    # ---- slide 9 -------------------------------------------------------------------------
    class POSETransformerEncoder(nn.Module):
        def __init__(self, dim, ff_dim, num_layers, skip_factor):
            super().__init__()
            self.layers = nn.ModuleList([
                POSELayer(dim, skip_factor, ff_dim)
                for _ in range(num_layers)
            ])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    # ---- slide 10 ------------------------------------------------------------------------
    class POSESummarizer(nn.Module):
        def __init__(self, vocab_size, embed_dim, num_layers, skip_factor):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed_dim)
            self.pose_encoder = POSETransformerEncoder(embed_dim, embed_dim*4, num_layers, skip_factor)
            self.output_proj = nn.Linear(embed_dim, vocab_size)

        def forward(self, x):
            x = self.embedding(x)
            x = self.pose_encoder(x)
            return self.output_proj(x)

    # ---- slide 11 ------------------------------------------------------------------------
    class POSEMusicClassifier(nn.Module):
        def __init__(self, input_dim, hidden_dim, num_layers, skip_factor, num_genres):
            super().__init__()
            self.feature_extractor = nn.Linear(input_dim, hidden_dim)
            self.pose_encoder = POSETransformerEncoder(hidden_dim, hidden_dim*4, num_layers, skip_factor)
            self.classifier = nn.Linear(hidden_dim, num_genres)

        def forward(self, x):
            x = self.feature_extractor(x)
            x = self.pose_encoder(x)
            x = x.mean(dim=1)  # Global average pooling
            return self.classifier(x)

    # ---- not in the seed -----------------------------------------------------------------
    # libpose runs every mode in either weight layout; the seed has a module only for full
    # attention with the fused qkv layout (slide 1) and for single-head strided attention with
    # separate query/key/value (slide 3). These two fill the gaps with the seed's own code
    # shapes: slide 1 with slide 3's kept positions (keys and values projected only there, as
    # libpose does), and slide 3 split into heads.
    class StridedPOSEAttention(POSEAttention):
        def __init__(self, dim, num_heads, skip_factor):
            super().__init__(dim, num_heads)
            self.skip_factor = skip_factor

        def forward(self, x):
            B, N, C = x.shape
            H = self.num_heads
            pos = torch.arange(0, N, self.skip_factor)
            w, b = self.qkv.weight, self.qkv.bias
            q = nn.functional.linear(x, w[:C], None if b is None else b[:C])
            kv = nn.functional.linear(x[:, pos], w[C:], None if b is None else b[C:])
            q = q.reshape(B, N, H, C // H).transpose(1, 2)
            kv = kv.reshape(B, len(pos), 2, H, C // H).permute(2, 0, 3, 1, 4)
            attn = (q @ kv[0].transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            return self.proj((attn @ kv[1]).transpose(1, 2).reshape(B, N, C))

    class MultiHeadSkipWiseAttention(SkipWiseAttention):
        def __init__(self, dim, skip_factor, num_heads):
            super().__init__(dim, skip_factor)
            self.num_heads = num_heads

        def forward(self, x):
            B, N, C = x.shape
            H = self.num_heads
            pos = torch.arange(0, N, self.skip_factor)
            q = self.query(x).reshape(B, N, H, C // H).transpose(1, 2)
            k = self.key(x[:, pos]).reshape(B, len(pos), H, C // H).transpose(1, 2)
            v = self.value(x[:, pos]).reshape(B, len(pos), H, C // H).transpose(1, 2)
            attn = torch.softmax((q @ k.transpose(-2, -1)) / ((C // H) ** 0.5), dim=-1)
            return (attn @ v).transpose(1, 2).reshape(B, N, C)

    return {k: v for k, v in locals().items() if isinstance(v, type)}


# ---- the worker: one case in one fresh process -------------------------------------------------

def current_rss_kib():
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def build_case(case, m):
    """The torch module and input for one pose_bench JSON record, and a short description."""
    import torch
    mode, layout, heads = case["mode"], case["layout"], case["heads"]
    b, n, d, skip = case["batch"], case["seq_len"], case["dim"], case["skip"]
    if case["bench"] == "model":
        if heads != 1:
            return None, None, "no seed model has more than one head"
        kind, layers = case["model"], case["layers"]
        # The seed's models take one skip factor; pose_bench reports the one used at this
        # length (1 for full, the adaptive k for adaptive).
        if kind == "encoder":
            mod = m["POSETransformerEncoder"](d, 4 * d, layers, skip)
            x = torch.randn(b, n, d)
            desc = "POSETransformerEncoder (slide 9)"
        elif kind == "classifier":
            mod = m["POSEMusicClassifier"](128, d, layers, skip, 10)
            x = torch.randn(b, n, 128)
            desc = "POSEMusicClassifier (slide 11)"
        elif kind == "summarizer":
            mod = m["POSESummarizer"](30000, d, layers, skip)
            x = torch.randint(0, 30000, (b, n))
            desc = "POSESummarizer (slide 10)"
        else:
            return None, None, "unknown model " + kind
        return mod.eval(), x, desc + " k=%d" % skip
    if mode == "full" and layout == "qkv":
        if heads != 8:  # slide 8's StandardAttention hard-codes 8 heads
            return _SelfAttention(torch.nn.MultiheadAttention(d, num_heads=heads)), \
                torch.randn(n, b, d), "nn.MultiheadAttention(%d heads)" % heads
        # Slide 8 feeds nn.MultiheadAttention a sequence-first [seq_len, batch, dim] tensor.
        return m["StandardAttention"](d).eval(), torch.randn(n, b, d), \
            "StandardAttention (slide 8, nn.MultiheadAttention)"
    x = torch.randn(b, n, d)
    if layout == "sep":
        if mode == "adaptive" and heads == 1:
            return m["AdaptiveSkipAttention"](d, case["max_seq_len"]).eval(), x, \
                "AdaptiveSkipAttention (slide 4) k=%d" % skip
        if heads == 1:
            return m["SkipWiseAttention"](d, skip).eval(), x, \
                "SkipWiseAttention (slide 3) k=%d" % skip
        return m["MultiHeadSkipWiseAttention"](d, skip, heads).eval(), x, \
            "SkipWiseAttention split into %d heads (not seed) k=%d" % (heads, skip)
    return m["StridedPOSEAttention"](d, heads, skip).eval(), x, \
        "POSEAttention (slide 1) with kept positions (not seed) k=%d" % skip


class _SelfAttention:
    """nn.MultiheadAttention called as slide 8 calls it, for head counts other than 8."""

    def __init__(self, mha):
        self.mha = mha.eval()

    def __call__(self, t):
        return self.mha(t, t, t)[0]


def worker(case, reps):
    import torch
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    if case["bench"] == "sgemm":
        a = torch.randn(case["m"], case["k"])
        w = torch.randn(case["n"], case["k"])
        fn = lambda: torch.nn.functional.linear(a, w)  # noqa: E731  same product as pose_linear
        desc = "torch.nn.functional.linear"
    else:
        mod, x, desc = build_case(case, seed_modules())
        if mod is None:
            print(json.dumps({"skipped": desc}))
            return
        fn = lambda: mod(x)  # noqa: E731
    with torch.no_grad():
        before = current_rss_kib()
        t0 = time.perf_counter()
        out = fn()
        warm = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del out
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out
    print(json.dumps({"seconds": statistics.median(times), "warmup_seconds": warm,
                      "peak_bytes": max(0, peak - before) * 1024, "module": desc,
                      "torch_version": torch.__version__}))


# ---- the driver --------------------------------------------------------------------------------

def output_bytes(case):
    b, n, d = case["batch"], case["seq_len"], case["dim"]
    kind = case.get("model")
    if kind == "summarizer":
        return 4 * b * n * 30000
    if kind == "classifier":
        return 4 * b * 10
    return 4 * b * n * d


def label(case):
    if case.get("model"):
        return "%s %s" % (case["model"], case["mode"])
    return "%s %s h%d" % (case["mode"], case["layout"], case["heads"])


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d B" % n


def worker_env():
    """Debian's torch runs its OpenMP threads beside OpenBLAS's own pthreads. With OpenMP's
    default (active, spinning) wait policy the idle OpenMP threads keep the cores busy while
    OpenBLAS works, and on a 2-core machine torch ran 2x (large cases) to 30x (small ones)
    slower than with PASSIVE. Comparing against a handicapped torch would flatter libpose, so
    PASSIVE is the default here; set OMP_WAIT_POLICY yourself to measure something else."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_worker(case, reps, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(case),
           "--worker-reps", str(reps)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=worker_env())
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % timeout}
    if p.returncode != 0 or not p.stdout.strip():
        tail = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return {"error": tail}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(
        description="pose_bench against the seed's PyTorch modules, side by side. Options not "
                    "listed here are passed to pose_bench (see pose_bench --help).")
    ap.add_argument("--pose-bench", default="./build/bench/pose_bench",
                    help="pose_bench executable (default ./build/bench/pose_bench)")
    ap.add_argument("--json", action="store_true", help="one JSON object per case")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per torch case (900)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-reps", type=int, default=3, help=argparse.SUPPRESS)
    args, passthrough = ap.parse_known_args()

    if args.worker:
        worker(json.loads(args.worker), args.worker_reps)
        return 0

    try:
        import torch
    except Exception as e:  # ImportError, or a broken install raising something else
        print("compare_torch: PyTorch is not available (import torch: %s); nothing to compare "
              "against. Install it (Debian: apt-get install python3-torch) to run this script."
              % e)
        return 0

    if not (os.path.isfile(args.pose_bench) and os.access(args.pose_bench, os.X_OK)):
        print("compare_torch: pose_bench not found at %s (build it, or pass --pose-bench PATH)"
              % args.pose_bench, file=sys.stderr)
        return 2
    cmd = [args.pose_bench, "--json"] + passthrough
    print("running: %s" % " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode == 2:
        return 2  # pose_bench rejected the options and said why
    records = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0:
        print("compare_torch: pose_bench exited with %d; comparing the cases it finished"
              % p.returncode, file=sys.stderr)

    done = {}  # (group, label) -> torch seconds, for torch's own speedup over full
    if not args.json:
        print("PyTorch %s (OMP_WAIT_POLICY=%s), pose_bench %s" % (
            torch.__version__, worker_env()["OMP_WAIT_POLICY"], args.pose_bench))
        print("%-20s %5s %7s %10s %10s %10s %8s %8s %10s %10s  %s" % (
            "case", "batch", "seq_len", "pose_ms", "torch_ms", "torch/pose", "pose_x", "torch_x",
            "pose_mem", "torch_mem", "torch module"))
    for rec in records:
        reps = rec.get("reps", 3)
        if rec["bench"] == "sgemm" and rec.get("when") == "end":
            continue  # pose_bench's noise check; torch's rate is measured once
        if rec["bench"] == "sgemm":
            t = run_worker(rec, reps, args.timeout)
            flops = 2.0 * rec["m"] * rec["n"] * rec["k"]
            tg = flops / t["seconds"] * 1e-9 if "seconds" in t else None
            if args.json:
                print(json.dumps({"bench": "sgemm", "threads": rec["threads"],
                                  "pose_gflops": rec["gflops"], "torch_gflops": tg}))
            else:
                print("sgemm %dx%dx%d at %d threads: pose_linear %.1f GFLOP/s, torch %s GFLOP/s"
                      % (rec["m"], rec["n"], rec["k"], rec["threads"], rec["gflops"],
                         "%.1f" % tg if tg else t.get("error", "?")))
            sys.stdout.flush()
            continue
        group = (rec["bench"], rec.get("model"), rec["batch"], rec["seq_len"], rec["dim"])
        t = run_worker(rec, reps, args.timeout)
        ts = t.get("seconds")
        if ts is not None:
            done[(group, label(rec))] = ts
        ref = rec.get("speedup_ref")
        tfull = done.get((group, ref)) if ref else None
        torch_x = tfull / ts if (tfull and ts) else None
        pose_mem = rec["workspace_bytes"] + output_bytes(rec)
        ratio = ts / rec["seconds"] if ts else None
        if args.json:
            print(json.dumps({
                "bench": rec["bench"], "model": rec.get("model"), "mode": rec["mode"],
                "layout": rec["layout"], "heads": rec["heads"], "batch": rec["batch"],
                "seq_len": rec["seq_len"], "dim": rec["dim"], "skip": rec["skip"],
                "threads": rec["threads"], "reps": reps, "pose_seconds": rec["seconds"],
                "torch_seconds": ts, "torch_over_pose": ratio,
                "pose_speedup_vs_full": rec.get("speedup_vs_full"),
                "torch_speedup_vs_full": torch_x, "pose_mem_bytes": pose_mem,
                "torch_mem_bytes": t.get("peak_bytes"), "torch_module": t.get("module"),
                "error": t.get("error") or t.get("skipped")}))
        else:
            sx = rec.get("speedup_vs_full")
            print("%-20s %5d %7d %10.2f %10s %10s %8s %8s %10s %10s  %s" % (
                label(rec), rec["batch"], rec["seq_len"], rec["seconds"] * 1e3,
                "%.2f" % (ts * 1e3) if ts else "-", "%.2fx" % ratio if ratio else "-",
                "%.2fx" % sx if sx else "-", "%.2fx" % torch_x if torch_x else "-",
                fmt_bytes(pose_mem), fmt_bytes(t.get("peak_bytes")),
                t.get("module") or t.get("error") or t.get("skipped")))
        sys.stdout.flush()
    if not args.json:
        print("\ntorch/pose: torch's median time over libpose's (> 1: libpose is faster). "
              "pose_x, torch_x: each one's\nspeedup over its own full case. pose_mem: libpose "
              "scratch + output; torch_mem: peak RSS growth of the\nforward call (includes its "
              "output).")
    return 0 if p.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
