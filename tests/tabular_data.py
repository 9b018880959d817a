"""Small, real-looking tabular datasets with a known signal, one per Amazon ML model type.

Each comes as (CSV bytes, Amazon ML data schema dict). They carry what users' files carry:
categorical, binary (in mixed spellings), text and numeric columns, missing values, quoted
fields with commas, a header row and a rowId in some.
"""

from __future__ import annotations

import csv
import io

import numpy as np

JOBS = ["admin.", "technician", "services", "management", "retired", "student"]
WORDS_GOOD = ["prompt", "friendly", "loyal", "happy", "renewed"]
WORDS_BAD = ["late", "complaint", "angry", "closed", "overdue"]


def _csv(header: list[str] | None, rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def schema(attributes: list[tuple[str, str]], target: str, *, row_id: str | None = None,
           header: bool = False, excluded: list[str] | None = None) -> dict:
    return {
        "version": "1.0",
        "rowId": row_id,
        "rowWeight": None,
        "targetAttributeName": target,
        "dataFormat": "CSV",
        "dataFileContainsHeader": header,
        "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes],
        "excludedAttributeNames": excluded or [],
    }


CENSUS_ATTRIBUTES = [("id", "CATEGORICAL"), ("age", "NUMERIC"), ("country", "CATEGORICAL"),
                     ("married", "BINARY"), ("notes", "TEXT"), ("zip", "NUMERIC"), ("income", "BINARY")]


def census_schema(**changes) -> dict:
    """A census-like schema with one attribute of each type, a header, a rowId (``id``), a BINARY
    target (``income``) and one excluded attribute (``zip``); ``changes`` replace top-level keys."""
    return {**schema(CENSUS_ATTRIBUTES, "income", row_id="id", header=True, excluded=["zip"]), **changes}


def banking(n: int = 600, seed: int = 0) -> tuple[bytes, dict]:
    """BINARY: will the customer subscribe? Header row, rowId, every attribute type, missing values."""
    rng = np.random.default_rng(seed)
    attributes = [("customerId", "CATEGORICAL"), ("age", "NUMERIC"), ("job", "CATEGORICAL"),
                  ("housing", "BINARY"), ("balance", "NUMERIC"), ("notes", "TEXT"), ("y", "BINARY")]
    rows = []
    for i in range(n):
        age = int(rng.integers(18, 80))
        job = JOBS[int(rng.integers(len(JOBS)))]
        housing = bool(rng.random() < 0.5)
        balance = float(np.round(rng.normal(1500, 900), 2))
        good = rng.random() < 0.5
        words = rng.choice(WORDS_GOOD if good else WORDS_BAD, size=2)
        logit = 2.5 * good - 1.2 + 0.9 * (job in ("retired", "student")) + 0.6 * housing + (balance - 1500) / 900
        y = bool(rng.random() < 1 / (1 + np.exp(-logit)))
        notes = f"{words[0].capitalize()}, {words[1]}!"
        row = [f"C{i:05d}", age, job, ("yes" if housing else "no") if i % 3 else ("T" if housing else "f"),
               balance, notes, "yes" if y else "no"]
        if i % 17 == 0:
            row[1] = ""            # missing age
        if i % 23 == 0:
            row[2] = ""            # missing job
        rows.append(row)
    return _csv([a for a, _ in attributes], rows), schema(attributes, "y", row_id="customerId", header=True)


def houses(n: int = 500, seed: int = 1) -> tuple[bytes, dict]:
    """REGRESSION: the price of a house. No header; an excluded column; missing values."""
    rng = np.random.default_rng(seed)
    attributes = [("sqft", "NUMERIC"), ("rooms", "NUMERIC"), ("neighborhood", "CATEGORICAL"),
                  ("garage", "BINARY"), ("listing", "TEXT"), ("agent", "CATEGORICAL"), ("price", "NUMERIC")]
    areas = {"north": 40_000, "south": -20_000, "harbor": 90_000, "old-town": 15_000}
    rows = []
    for i in range(n):
        sqft = float(rng.uniform(600, 3500))
        rooms = int(rng.integers(1, 7))
        area = list(areas)[int(rng.integers(len(areas)))]
        garage = bool(rng.random() < 0.4)
        price = 50_000 + 120 * sqft + 8_000 * rooms + areas[area] + 25_000 * garage + rng.normal(0, 15_000)
        listing = "bright, renovated kitchen" if rng.random() < 0.5 else "needs work; original floors"
        row = [round(sqft, 1), rooms, area, "true" if garage else "false", listing, f"agent-{i % 7}", round(price, 2)]
        if i % 19 == 0:
            row[1] = ""            # missing rooms
        rows.append(row)
    return _csv(None, rows), schema(attributes, "price", excluded=["agent"])


def wines(n: int = 450, seed: int = 2) -> tuple[bytes, dict]:
    """MULTICLASS: three word labels from numeric and categorical inputs. No header."""
    rng = np.random.default_rng(seed)
    attributes = [("acidity", "NUMERIC"), ("sugar", "NUMERIC"), ("region", "CATEGORICAL"), ("colour", "CATEGORICAL")]
    labels = ["red", "white", "rose"]
    rows = []
    for i in range(n):
        c = int(rng.integers(3))
        acidity = float(rng.normal([3.3, 3.0, 3.15][c], 0.08))
        sugar = float(rng.normal([2.0, 6.0, 4.0][c], 0.8))
        region = ["rioja", "mosel", "provence"][c] if rng.random() < 0.7 else ["rioja", "mosel", "provence"][int(rng.integers(3))]
        rows.append([round(acidity, 3), round(sugar, 2), region, labels[c]])
    return _csv(None, rows), schema(attributes, "colour")
