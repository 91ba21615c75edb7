"""The table (terminal and Markdown), the JSON file, and ``compare``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.stats import Row

UNITS = {"ms": "ms", "msg/s": "msg/s", "ev/s": "ev/s", "MB": "MB", "s": "s"}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _detail(row: dict[str, Any]) -> str:
    d = row.get("detail") or {}
    keys = [k for k in ("p50", "p99", "max", "n_per_repeat", "repeats") if k in d]
    parts = [f"{k}={d[k]}" for k in keys]
    if row.get("note"):
        parts.insert(0, row["note"])
    return "; ".join(parts)


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ["benchmark", "case", "value", "target", "ratio", "result"]
    lines = []
    body = []
    for r in rows:
        ratio = r.get("ratio")
        body.append(
            [
                r["benchmark"],
                r["case"],
                fmt(r["value"], r["unit"]),
                r.get("target_text") or ("reference" if r["status"] == "ref" else ""),
                "" if ratio is None else f"{ratio:.2f}",
                r["status"],
            ]
        )
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
    lines.append("  ".join("-" * w for w in widths))
    for r, cells in zip(rows, body, strict=True):
        line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells))
        extra = _detail(r)
        lines.append(line + (f"   {extra}" if extra else ""))
    return "\n".join(lines)


def write(path: Path, meta: dict[str, Any], rows: list[Row], extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": [r.to_json() for r in rows], "raw": extra}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def compare(old_path: Path, new_path: Path) -> str:
    old = json.loads(old_path.read_text())
    new = json.loads(new_path.read_text())
    old_rows = {r["id"]: r for r in old["rows"]}
    lines = [
        f"old: {old_path} ({old['meta'].get('date')}, {old['meta'].get('store')})",
        f"new: {new_path} ({new['meta'].get('date')}, {new['meta'].get('store')})",
        "",
    ]
    if old["meta"].get("params") != new["meta"].get("params"):
        lines += [
            "note: the runs used different parameters (--quick vs full?); compare like with like",
            "",
        ]
    header = ["id", "old", "new", "new/old", "", "status old→new"]
    body = []
    for r in new["rows"]:
        o = old_rows.get(r["id"])
        ov = o["value"] if o else None
        nv = r["value"]
        ratio = nv / ov if ov not in (None, 0) and nv is not None else None
        verdict = ""
        if ratio is not None and abs(ratio - 1) >= 0.05:
            better = (ratio < 1) == (r.get("better", "lower") == "lower")
            verdict = "better" if better else "worse"
        body.append(
            [
                r["id"],
                fmt(ov, r["unit"]),
                fmt(nv, r["unit"]),
                "" if ratio is None else f"{ratio:.2f}",
                verdict,
                f"{o['status'] if o else '—'} → {r['status']}",
            ]
        )
    for rid in old_rows.keys() - {r["id"] for r in new["rows"]}:
        o = old_rows[rid]
        body.append([rid, fmt(o["value"], o["unit"]), "—", "", "", f"{o['status']} → —"])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) for cells in body]
    return "\n".join(lines)


def markdown(path: Path) -> str:
    """The table docs/benchmarks.md shows: machine, date, store, then one line per row, then the noise."""
    data = json.loads(path.read_text())
    meta, rows = data["meta"], data["rows"]
    m = meta["machine"]
    commit = (meta.get("git") or {}).get("commit", "")[:10]
    git = meta.get("git") or {}
    dirty = ""
    if git.get("dirty"):
        because = git.get("dirty_because")
        dirty = (
            f" + not the commit's code ({'; '.join(because)})"
            if because
            else " + uncommitted changes"
        )
    head = (
        f"{meta['date']}, {meta['store']}{' (quick)' if meta.get('quick') else ''}, "
        f"{m['nproc']} × {m['cpu']}, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"Synapse {meta.get('versions', {}).get('synapse', '?').split()[0]}, commit {commit}{dirty}; "
        f"{meta.get('seconds')} s."
    )
    if meta.get("note"):
        head += f" Note: {meta['note']}"
    lines = [
        head,
        "",
        "| benchmark | case | value | target | ratio | result | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.get("ratio")
        d = r.get("detail") or {}
        extra = r.get("note") or ""
        if not extra and "p50" in d and "p99" in d and r["unit"] == "ms":
            extra = f"p50 {d['p50']:.1f}, p99 {d['p99']:.1f} ms"
        lines.append(
            f"| {r['benchmark']} | {r['case']} | {fmt(r['value'], r['unit'])} | "
            f"{r.get('target_text') or ('reference' if r['status'] == 'ref' else '')} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | "
            f"{r['status']} | {extra.replace('|', '/')} |"
        )
    noise = (data.get("raw") or {}).get("noise") or {}
    if noise:
        lines += [
            "",
            "Other processes' CPU use during each benchmark (cores of "
            f"{m['nproc']}): " + ", ".join(f"{k} {v['others_cores']}" for k, v in noise.items()),
        ]
    return "\n".join(lines)
