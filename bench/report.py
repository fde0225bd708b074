"""The Markdown report and PNG charts of a benchmark run, from its JSON.

    python bench/report.py bench/results/latest.json

rewrites latest.md and the latest-*.png charts beside it (run.py does this itself);

    python bench/report.py --readme bench/results/latest.json

also rewrites the summary in README.md's "Performance" section (between its
performance:begin and performance:end markers) from that JSON, so that the README
always shows the figures of the run whose charts it shows (tests/test_readme.py checks).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import bench_access
import bench_arrayops
import bench_containers
import bench_counters
import bench_demo
import bench_ecosystem
import bench_handoff
import bench_queue
import bench_scaling
import bench_sync
import gunicorn_memory
from _common import TARGET_HEADERS, fmt_mb, table, target_cells

FORMATTERS = {
    "demo": bench_demo.format_result,
    "gunicorn": gunicorn_memory.format_result,
    "access": bench_access.format_result,
    "arrayops": bench_arrayops.format_result,
    "counters": bench_counters.format_result,
    "sync": bench_sync.format_result,
    "queue": bench_queue.format_result,
    "handoff": bench_handoff.format_result,
    "ecosystem": bench_ecosystem.format_result,
    "scaling": bench_scaling.format_result,
    "containers": bench_containers.format_result,
}
ORDER = ["demo", "gunicorn", "access", "arrayops", "counters", "sync", "queue", "handoff",
         "ecosystem", "scaling", "containers"]
PHASE_COLORS = {"boot": "#dddddd", "idle": "#f4f4f4", "read": "#ffe3c2", "load": "#dcebfa"}


# -- charts ----------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _of_dataset(gun: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The gunicorn results, with the strategies of one data set only."""
    return {**gun, "strategies": gunicorn_memory.of_dataset(gun, dataset)}


def chart_memory_over_time(gun: dict[str, Any], path: str, what: str = "") -> None:
    """One panel per strategy: each worker's USS (solid) and PSS (dashed) over time,
    the master's PSS (grey), and the phases shaded, like the article's charts."""
    plt = _pyplot()
    runs = list(gun["strategies"].values())
    cols = 2
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), sharey=True, squeeze=False)
    top = max((max(s["uss"] + s["pss"]) for r in runs for s in r["series"]), default=1) / 1e6
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, res in zip(axes.flat, runs, strict=False):
        for phase, (start, end) in res["phases"].items():
            ax.axvspan(start, end, color=PHASE_COLORS.get(phase, "#eeeeee"), lw=0)
            ax.text((start + end) / 2, top * 1.02, phase, ha="center", va="bottom",
                    fontsize=7, color="#555555")
        k = 0
        for s in res["series"]:
            t = s["t"]
            if s["role"] == "master":
                ax.plot(t, [v / 1e6 for v in s["pss"]], color="grey", lw=1, ls=":",
                        label="master PSS")
                continue
            if s["role"] == "other":  # e.g. multiprocessing's resource tracker
                ax.plot(t, [v / 1e6 for v in s["pss"]], color="#bbbbbb", lw=1, ls="-.",
                        label="helper process PSS")
                continue
            c = colors[k % len(colors)]
            k += 1
            ax.plot(t, [v / 1e6 for v in s["uss"]], color=c, lw=1.4,
                    label="worker USS" if k == 1 else None)
            ax.plot(t, [v / 1e6 for v in s["pss"]], color=c, lw=1, ls="--",
                    label="worker PSS" if k == 1 else None)
        growth = res["summary"].get("uss_growth_per_worker") or [0]
        ax.set_title(f"{res['title']}: +{growth[len(growth) // 2] / 1e6:.0f} MB USS per worker",
                     fontsize=9)
        ax.set_ylim(0, top * 1.12)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("MB", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("seconds since gunicorn started", fontsize=8)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    cfg = gun["config"]
    what = what or f"{cfg['items']:,} integers"
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=4)
    fig.suptitle(f"Memory of each gunicorn process over time: {cfg['workers']} workers, {what}",
                 fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart_dicts(gun: dict[str, Any], path: str) -> None:
    chart_memory_over_time(gun, path, f"{gun['config']['dict_items']:,} string keys")


def chart_total_memory(gun: dict[str, Any], path: str) -> None:
    """Total PSS of all gunicorn processes at the end of the load, per strategy."""
    plt = _pyplot()
    runs = list(gun["strategies"].values())
    titles = [r["title"] for r in runs]
    end = [r["summary"]["load"] for r in runs]
    master = [((e["master_pss"] or 0) + e.get("other_pss", 0)) / 1e6 for e in end]
    workers = [sum(e["worker_pss"]) / 1e6 for e in end]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(runs) + 1.2))
    y = list(range(len(runs)))[::-1]
    colors = ["#2b7bba" if r["strategy"] == "cowbuf" else "#9bbbd9" for r in runs]
    ax.barh(y, master, color="#cccccc", label="master (and its helpers)")
    ax.barh(y, workers, left=master, color=colors, label="workers")
    for yi, m, w in zip(y, master, workers, strict=True):
        ax.text(m + w, yi, f" {m + w:,.0f} MB", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(titles, fontsize=8)
    ax.set_xlabel("total PSS of master + workers (MB)", fontsize=8)
    ax.set_xlim(0, max(m + w for m, w in zip(master, workers, strict=True)) * 1.18)
    cfg = gun["config"]
    ax.set_title(f"Total memory after every worker read all {cfg['items']:,} integers "
                 f"({cfg['workers']} gunicorn workers)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_scaling(scaling: dict[str, Any], path: str) -> None:
    """Total PSS against workers, one panel per data size, one line per strategy."""
    import strategies
    plt = _pyplot()
    sizes = scaling["config"]["items"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.2), squeeze=False)
    for ax, items in zip(axes[0], sizes, strict=True):
        for res in scaling["results"]:
            if res["items"] != items:
                continue
            xs = [r["workers"] for r in res["runs"]]
            ys = [r["total_pss"] / 1e6 for r in res["runs"]]
            bold = res["strategy"] == "cowbuf"
            ax.plot(xs, ys, marker="o", lw=2.2 if bold else 1.2,
                    label=strategies.STRATEGIES[res["strategy"]].title)
        ax.set_title(f"{items:,} integers", fontsize=9)
        ax.set_xlabel("workers", fontsize=8)
        ax.set_xticks(scaling["config"]["workers"])
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("total PSS (MB)", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Total memory once every worker has read all values", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- Markdown --------------------------------------------------------------------------

def article_check(gun: dict[str, Any]) -> list[str]:
    """Where the article's claims hold on this machine, and where not, with figures."""
    runs = gun["strategies"]

    def growth(name: str) -> float | None:
        g = runs.get(name, {}).get("summary", {}).get("uss_growth_per_worker")
        return g[len(g) // 2] if g else None

    lines = []
    lst, job = growth("list"), growth("joblib")
    if lst is not None and job is not None:
        if job > 0.5 * lst:
            lines.append(
                f"- **joblib**: the article says a list loaded with `joblib.load` is not "
                f"copied by reading it. Here it is: each worker's USS grew by "
                f"{fmt_mb(job)}, like a plain preloaded list ({fmt_mb(lst)}). joblib "
                "only avoids the copy for numpy arrays it memory-maps "
                "(`mmap_mode`), not for Python lists: the claim does not hold.")
        else:
            lines.append(f"- **joblib**: a `joblib.load`ed list grew by {fmt_mb(job)} per "
                         f"worker against {fmt_mb(lst)} for a plain list: the claim holds.")
    frz = growth("list-gcfreeze")
    if lst is not None and frz is not None:
        lines.append(
            f"- **gc.freeze()** keeps the garbage collector off the objects but not the "
            f"reference counts: each worker still grew by {fmt_mb(frz)} (list: "
            f"{fmt_mb(lst)}).")
    flat = [(runs[n]["title"], growth(n)) for n in
            ("numpy", "mmap-struct", "mmap-memoryview", "shared_memory", "rawarray", "cowbuf")
            if growth(n) is not None]
    if flat:
        worst = max(g for _, g in flat)
        lines.append(
            f"- **numpy, mmap, shared_memory, RawArray and cowbuf** stay shared, as the "
            f"article says: at most {fmt_mb(worst)} of growth per worker.")
    return lines


def all_targets(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name in ORDER:
        for t in data["benchmarks"].get(name, {}).get("targets", []):
            rows.append([name, t["name"], *target_cells(t)])
    return rows


def markdown(data: dict[str, Any], charts: dict[str, str]) -> str:
    meta = data["meta"]
    m = meta["machine"]
    mem = f"{m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else "?"
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    out = [
        f"# cowbuf benchmarks ({meta['mode']} run)", "",
        f"Measured {meta['started']} in {meta['seconds'] / 60:.1f} min with "
        f"`{meta['command']}`.", "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {mem} RAM; {m['os']}; "
        f"{m['implementation']} {m['python']}; load average (1, 5, 15 min) at the start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average'] or [])}, at the end "
        f"{', '.join(f'{x:.1f}' for x in meta.get('load_average_at_end') or [])}. {vers}"
        + (f"; cowbuf at commit {m['cowbuf_commit']}" if m.get("cowbuf_commit") else "") + ".",
        "",
        "All ratios compare figures measured in the same run on the same machine; "
        "times are medians of repeated runs.", "",
    ]
    rows = all_targets(data)
    if rows:
        out += ["## Targets", "",
                "Each ratio is the median of per-round ratios: every round times cowbuf "
                "and the reference back to back, so that load from elsewhere on the "
                "machine hits both alike. The range is that of the rounds' ratios; a "
                "target is met only if it held in most rounds.", "",
                table(["benchmark", "target", *TARGET_HEADERS], rows), ""]
    bench = data["benchmarks"]
    for name in ORDER:
        if name not in bench:
            continue
        res = bench[name]
        if "error" in res:
            out += [f"## {name}", "", f"Failed: {res['error']}", ""]
            continue
        body = FORMATTERS[name](res)
        if body.startswith("### "):  # the benchmark's own title becomes the section's
            title, _, body = body.partition("\n")
            out += ["## " + title[4:], ""]
            body = body.lstrip("\n")
        else:
            out += [f"## {res['title']}", ""]
        if name == "gunicorn":
            check = article_check(res)
            if check:
                out += ["The article's claims (and the usual advice of `gc.freeze()`), "
                        "checked on this machine:", "", *check, ""]
            for key, alt in (("memory", "memory of each process over time"),
                             ("total", "total memory per strategy")):
                if key in charts:
                    out += [f"![{alt}]({charts[key]})", ""]
        out += [body, ""]
        if name == "gunicorn" and "dicts" in charts:
            out += [f"![memory of each worker holding a lookup table]({charts['dicts']})", ""]
        if name == "scaling" and "scaling" in charts:
            out += [f"![total memory against workers]({charts['scaling']})", ""]
    return "\n".join(out)


README_BEGIN = "<!-- performance:begin (bench/report.py --readme writes this part) -->"
README_END = "<!-- performance:end -->"
QUICKSTART_BEGIN = "<!-- quickstart:begin (bench/report.py --readme writes this part) -->"
QUICKSTART_END = "<!-- quickstart:end -->"
README_CHARTS = {"memory": "memory of each gunicorn worker over time",
                 "total": "total memory per strategy"}


def machine_line(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    mem = f"{m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else "?"
    load = ", ".join(f"{x:.1f}" for x in m.get("load_average") or [])
    return (f"{m['cpu']}, {m['cpus']} CPUs, {mem} RAM; {m['os']}; {m['implementation']} "
            f"{m['python']}; load average at the start {load}")


def readme_section(data: dict[str, Any], results_dir: str = "bench/results",
                   stem: str = "latest") -> str:
    """The generated part of README.md's "Performance" section."""
    meta, bench = data["meta"], data["benchmarks"]
    out = [f"The {meta['mode']} run of {meta['started'][:10]} "
           f"(`{meta['command']}`, {meta['seconds'] / 60:.1f} min) on "
           f"{machine_line(meta)}. Every table: [{results_dir}/{stem}.md]"
           f"({results_dir}/{stem}.md); the raw figures, round by round: "
           f"[{stem}.json]({results_dir}/{stem}.json).", ""]
    gun = bench.get("gunicorn")
    if gun and gun.get("strategies"):
        cfg = gun["config"]
        out += [f"**The article's experiment under gunicorn**: {cfg['workers']} sync "
                f"workers, {cfg['items']:,} integers, each worker reads every one of "
                "them in Python, then serves lookups under load.", ""]
        out += [*article_check(gun), ""]
        for key, alt in README_CHARTS.items():
            out += [f"![{alt}]({results_dir}/{stem}-{key}.png)", ""]
        # (no read times here: three workers reading at once on this machine's CPUs
        # time the contention, not the access; bench_access compares access speed)
        rows = []
        for res in gunicorn_memory.of_dataset(gun, "ints").values():
            s = res["summary"]
            grow = s.get("uss_growth_per_worker") or []
            rows.append([res["title"], fmt_mb(grow[len(grow) // 2] if grow else None),
                         fmt_mb(s.get("load", {}).get("total_pss"))])
        out += [table(["data held as", "growth of each worker (USS)",
                       "total memory (sum of PSS)"], rows), ""]
        if gunicorn_memory.of_dataset(gun, "dict"):
            out += [f"**A lookup table under gunicorn**: {cfg['dict_items']:,} keys "
                    "`user:000000042:0123456` -> int, preloaded; each of the 3 workers looks "
                    "up every key with key objects of its own, as a request handler would.",
                    "", f"![memory of each worker holding a lookup table]({results_dir}/"
                    f"{stem}-dicts.png)", "",
                    table(gunicorn_memory.DICT_HEADERS, gunicorn_memory.dict_rows(gun)), ""]
    rows = all_targets(data)
    if rows:
        out += ["**cowbuf against its peers**, each ratio measured in the same run: the "
                "median of per-round ratios, their range, and in how many rounds the target "
                "held. A target is met only if it held in most rounds; a MISS is reported "
                "as it was measured:", "",
                table(["benchmark", "target", *TARGET_HEADERS], rows), ""]
    scaling = bench.get("scaling")
    if scaling and scaling.get("results"):
        out += ["**Scaling**: total memory (sum of PSS) after every worker has read all "
                "the values once, as workers and items grow (the table is in the report):",
                "", f"![total memory against workers]({results_dir}/{stem}-scaling.png)", ""]
    return "\n".join(out).rstrip("\n")


def readme_quickstart(data: dict[str, Any], results_dir: str = "bench/results",
                      stem: str = "latest") -> str:
    """The generated part of README.md's "Quick start": the demo's table, from a run."""
    demo = data["benchmarks"].get("demo")
    if not demo or "result" not in demo:
        return (f"(The run in [{results_dir}/{stem}.json]({results_dir}/{stem}.json) has no "
                "figures of it yet: `python bench/run.py` measures it with the rest.)")
    from cowbuf.demo import table as demo_table
    m = data["meta"]["machine"]
    return "\n".join([
        f"In the {data['meta']['mode']} run of {data['meta']['started'][:10]} "
        f"({m['cpus']} CPUs, {m['os'].split()[0]}, CPython {m['python']}; "
        f"[{stem}.json]({results_dir}/{stem}.json)):", "",
        "```", demo_table(demo["result"]), "```"])


def update_readme(data: dict[str, Any], readme: str, results_dir: str, stem: str) -> None:
    with open(readme) as f:
        text = f.read()
    for begin, end, body in (
            (README_BEGIN, README_END, readme_section(data, results_dir, stem)),
            (QUICKSTART_BEGIN, QUICKSTART_END, readme_quickstart(data, results_dir, stem))):
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{readme}: no {begin} ... {end} markers")
        block = f"{begin}\n{body}\n{end}"
        text = pattern.sub(lambda _, block=block: block, text)
    with open(readme, "w") as f:
        f.write(text)


def write_report(data: dict[str, Any], out_dir: str, stem: str) -> list[str]:
    """Write <stem>.md and the charts; returns the paths written."""
    written = []
    charts: dict[str, str] = {}
    bench = data["benchmarks"]
    try:
        _pyplot()
    except ImportError:
        print("matplotlib is not installed: no charts", file=sys.stderr)
    else:
        jobs = []
        gun = bench.get("gunicorn")
        if gun and gun.get("strategies"):
            ints, dicts = _of_dataset(gun, "ints"), _of_dataset(gun, "dict")
            jobs += [("memory", chart_memory_over_time, ints), ("total", chart_total_memory, ints)]
            if dicts["strategies"]:
                jobs.append(("dicts", _chart_dicts, dicts))
        scaling = bench.get("scaling")
        if scaling and scaling.get("results"):
            jobs.append(("scaling", chart_scaling, scaling))
        for key, fn, res in jobs:
            name = f"{stem}-{key}.png"
            fn(res, os.path.join(out_dir, name))
            charts[key] = name
            written.append(os.path.join(out_dir, name))
    md = os.path.join(out_dir, f"{stem}.md")
    with open(md, "w") as f:
        f.write(markdown(data, charts))
    written.append(md)
    return written


if __name__ == "__main__":
    args = sys.argv[1:]
    readme = bool(args) and args[0] == "--readme"
    if readme:
        args = args[1:]
    if len(args) != 1:
        sys.exit(__doc__)
    path = args[0]
    with open(path) as f:
        loaded = json.load(f)
    for p in write_report(loaded, os.path.dirname(os.path.abspath(path)),
                          os.path.splitext(os.path.basename(path))[0]):
        print(p)
    if readme:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        target = os.path.join(root, "README.md")
        update_readme(loaded, target,
                      os.path.relpath(os.path.dirname(os.path.abspath(path)), root),
                      os.path.splitext(os.path.basename(path))[0])
        print(target)
