"""Regenerate kcode.json from the canonical sources: `python -m bayesicl.strategies.canonical`.

Writes atomically and prints K_code per strategy. Run it after editing a canonical source.
"""

from __future__ import annotations

from ...atomic import write_json
from ..complexity import KCODE_PATH, measure_code_lengths


def main() -> None:
    table = measure_code_lengths()
    write_json(KCODE_PATH, table)
    if "brotli" not in table["paper_compatible_compressors"]:
        print("note: brotli is not installed; paper_compatible K_code omits it")
    for family, kinds in table["strategies"].items():
        for kind, entry in kinds.items():
            print(f"{family:15s} {kind:13s} K_code = {entry['bits']:7.0f} bits "
                  f"(paper_compatible {entry['paper_compatible_bits']:.0f}; "
                  f"{entry['normalized_bytes']} normalized bytes)")
    print(f"wrote {KCODE_PATH}")


if __name__ == "__main__":
    main()
