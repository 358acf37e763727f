#!/usr/bin/python3
"""Plots pose_bench --json output: time and workspace memory against sequence length.

    ./build/bench/pose_bench --sweep --json > sweep.jsonl
    /usr/bin/python3 bench/plot.py sweep.jsonl -o sweep.png
    ./build/bench/pose_bench --sweep --json | /usr/bin/python3 bench/plot.py -o sweep.png

One line per case (mode, weight layout, heads; plus dim and batch when the input mixes them),
log-log axes, so the O(n^2) of full attention and the O(n^2 / k) of strided attention show as
straight lines of slope 2 that differ by log k. Model rows (--models) and the sgemm reference
are skipped: they have one sequence length each. Needs matplotlib (Debian python3-matplotlib);
without it the script says so and exits 0.
"""

import argparse
import json
import sys


def series_key(rec):
    # Adaptive attention changes k with the length, so k is part of a series only for strided.
    skip = rec["skip"] if rec["mode"] == "strided" else None
    return (rec["mode"], rec["layout"], rec["heads"], skip, rec["dim"], rec["batch"])


def series_label(key, vary_dim, vary_batch):
    mode, layout, heads, skip, dim, batch = key
    text = "%s %s h%d" % (mode, layout, heads)
    if skip is not None:
        text += " k=%d" % skip
    if vary_dim:
        text += " dim %d" % dim
    if vary_batch:
        text += " batch %d" % batch
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", default="-",
                    help="file of pose_bench --json lines (default: standard input)")
    ap.add_argument("-o", "--output", default="pose_bench.png", help="PNG to write")
    args = ap.parse_args()

    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError as e:
        print("plot: matplotlib is not available (%s); install python3-matplotlib to draw the "
              "plot." % e)
        return 0

    f = sys.stdin if args.input == "-" else open(args.input)
    records, sgemm = [], None
    for line in f:
        line = line.strip()
        if not line.startswith("{"):
            continue  # tolerate a human-readable table or notes mixed in
        rec = json.loads(line)
        if rec.get("bench") == "sgemm":
            sgemm = rec
        elif rec.get("bench") in ("attention", "sweep"):
            records.append(rec)
    if not records:
        print("plot: no attention rows in the input (run pose_bench with --json)",
              file=sys.stderr)
        return 1

    series = {}
    for rec in records:
        series.setdefault(series_key(rec), []).append(rec)
    vary_dim = len({k[4] for k in series}) > 1
    vary_batch = len({k[5] for k in series}) > 1

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    styles = {"full": "-", "strided": "--", "adaptive": ":"}
    for key in sorted(series):
        rows = sorted(series[key], key=lambda r: r["seq_len"])
        n = [r["seq_len"] for r in rows]
        label = series_label(key, vary_dim, vary_batch)
        ls = styles.get(key[0], "-")
        ax_t.plot(n, [r["seconds"] for r in rows], ls, marker="o", ms=4, label=label)
        ax_m.plot(n, [max(r["workspace_bytes"], 1) / 2**20 for r in rows], ls, marker="o",
                  ms=4, label=label)
    threads = records[0]["threads"]
    title = "pose_bench, %d thread%s" % (threads, "" if threads == 1 else "s")
    if sgemm is not None:
        title += ", sgemm %.0f GFLOP/s" % sgemm["gflops"]
    if not vary_dim:
        title += ", dim %d" % records[0]["dim"]
    if not vary_batch:
        title += ", batch %d" % records[0]["batch"]
    fig.suptitle(title)
    ax_t.set_title("median forward time")
    ax_t.set_ylabel("seconds")
    ax_m.set_title("scratch memory of one forward call (workspace)")
    ax_m.set_ylabel("MiB")
    lens = sorted({r["seq_len"] for r in records})
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        if len(lens) <= 12:  # label the measured lengths, not just the decades
            ax.set_xticks(lens)
            ax.set_xticklabels([str(n) for n in lens], rotation=45)
            ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print("plot: wrote %s (%d series, %d points)" % (args.output, len(series), len(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
