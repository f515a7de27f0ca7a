"""Write the latest conformance results into ``docs/conformance.md``.

    python -m conformance.report
    python -m conformance.report --every-app REPORT.json [...]

Reads ``conformance/results/django-*.json`` (written by a full
``make conformance``) and ``conformance/expected.py`` and replaces the text
between the ``<!-- results -->`` and ``<!-- expected -->`` markers of the page.
With ``--every-app`` it prints, for reports of ``--apps all`` runs, each
database's totals by mode and the apps where a mode differs from stock (the
"Every app" sections of the page are written from it).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

from conformance.__main__ import MODES, RESULTS, ROOT
from conformance.expected import EXPECTED

PAGE = ROOT / "docs" / "conformance.md"
COUNTS = ("passed", "failed", "errors", "skipped")


def results_markdown() -> str:
    """One table per Django version and database: totals by mode, then apps."""
    out = []
    for path in sorted(RESULTS.glob("django-*.json")):
        report = json.loads(path.read_text())
        out.append(f"### Django {report['django']} (Python {report['python']})\n")
        out.append(f"Produced by `{report['command']}`; cells are passed / failed / errors / skipped.\n")
        for db, result in report["databases"].items():
            out.append(_table(db, result))
    return "\n".join(out)


def _table(db: str, result: dict) -> str:
    apps = result["apps"]
    modes, totals = _totals(apps)
    lines = [
        f"**{db}**: {len(result['regressions'])} regressions, {len(result['expected'])} expected failures\n",
        "| app | " + " | ".join(modes) + " |",
        "|---|" + "---:|" * len(modes),
    ]
    for app in sorted(apps):
        lines.append(f"| {app} | " + " | ".join(_cell(apps[app].get(m)) for m in modes) + " |")
    lines.append("| **total** | " + " | ".join(f"**{_cell(totals[m])}**" for m in modes) + " |")
    return "\n".join(lines) + "\n"


def _totals(apps: dict) -> tuple[list[str], dict[str, Counter]]:
    """The modes the report has, and each mode's counts summed over its apps."""
    modes = [m for m in MODES if any(m in row for row in apps.values())]
    totals = {m: Counter() for m in modes}
    for row in apps.values():
        for m in modes:
            totals[m].update(row.get(m, {}))
    return modes, totals


def _cell(counts: dict | None) -> str:
    """passed / failed / errors / skipped; ``-`` where the mode did not run the app (mixed modes)."""
    if counts is None:
        return "-"
    return " / ".join(str(counts.get(k, 0)) for k in COUNTS)


def expected_markdown() -> str:
    """The known failures: test id, where, why."""
    lines = ["| test | databases | modes | why |", "|---|---|---|---|"]
    for test_id, entry in sorted(EXPECTED.items()):
        where = ", ".join(entry.databases)
        lines.append(f"| `{test_id}` | {where} | {', '.join(entry.modes)} | {entry.reason} |")
    return "\n".join(lines) + "\n"


def every_app_markdown(report: dict) -> str:
    """Totals by mode, then only the apps where some mode differs from stock."""
    out = []
    for db, result in report["databases"].items():
        apps = result["apps"]
        modes, totals = _totals(apps)
        tests = sum(totals[modes[0]].values())
        out.append(
            f"**{db}**, Django {report['django']} (Python {report['python']}): {len(apps)} apps, "
            f"{tests:,} tests per mode, {len(result['regressions'])} regressions, "
            f"{len(result['expected'])} expected failures\n"
        )
        out += ["| mode | " + " | ".join(COUNTS) + " |", "|---|" + "---:|" * len(COUNTS)]
        out += [f"| {m} | " + " | ".join(f"{totals[m][k]:,}" for k in COUNTS) + " |" for m in modes]
        differing = sorted(
            a for a, row in apps.items() if any(m in row and row[m] != row.get("stock") for m in modes)
        )
        out += ["", "| app | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
        out += [f"| {a} | " + " | ".join(_cell(apps[a].get(m)) for m in modes) + " |" for a in differing]
        out.append("")
    return "\n".join(out)


def _replace(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{PAGE}: markers <!-- {marker} --> ... <!-- /{marker} --> not found")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> None:
    """Rewrite the generated parts of the page."""
    text = PAGE.read_text()
    text = _replace(text, "results", results_markdown())
    text = _replace(text, "expected", expected_markdown())
    PAGE.write_text(text)
    print(f"updated {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--every-app"]:
        for name in sys.argv[2:]:
            print(every_app_markdown(json.loads(Path(name).read_text())))
    else:
        main()
