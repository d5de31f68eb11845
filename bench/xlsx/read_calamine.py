"""Read every row of the first sheet with python-calamine; print rows and rows/s."""
import sys
import time

from python_calamine import CalamineWorkbook

start = time.perf_counter()
workbook = CalamineWorkbook.from_path(sys.argv[1])
sheet = workbook.get_sheet_by_index(0)
rows = 0
for _ in sheet.iter_rows():
    rows += 1
elapsed = time.perf_counter() - start
print(f"rows={rows} seconds={elapsed:.3f} rows_per_second={int(rows / elapsed)}")
