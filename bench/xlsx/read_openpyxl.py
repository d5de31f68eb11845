"""Read every row of the first sheet with openpyxl in read-only mode; print rows and rows/s."""
import sys
import time

from openpyxl import load_workbook

start = time.perf_counter()
workbook = load_workbook(sys.argv[1], read_only=True, data_only=True)
sheet = workbook.worksheets[0]
rows = 0
for _ in sheet.iter_rows(values_only=True):
    rows += 1
elapsed = time.perf_counter() - start
print(f"rows={rows} seconds={elapsed:.3f} rows_per_second={int(rows / elapsed)}")
