"""``python -m vitviz fetch NAME``: download a model's pretrained weights into the Hugging Face cache.

Exit status 0 once the weights are cached (at once when they already are), 2 with one sentence otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .hub import DownloadError, cached_weights, catalogue, download_weights


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vitviz", description="vitviz's command line: fetch a model's pretrained weights.",
        epilog="The catalogue: " + ", ".join(m.name for m in catalogue()))
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download NAME's weights into the Hugging Face cache (HF_HOME)")
    fetch.add_argument("name", help="a timm name with its pretrained tag, or hf-hub:ORG/NAME")
    args = parser.parse_args(argv)
    try:
        path = cached_weights(args.name)
        if path is None:
            path = download_weights(args.name, show_bar=True)
    except (DownloadError, ValueError) as e:
        print(f"python -m vitviz fetch: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.name}: cached at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
