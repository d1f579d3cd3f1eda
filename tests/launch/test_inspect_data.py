import re
import subprocess
import sys

TINY = "recipes/test/tiny_sft.yaml"


def _inspect(repo, *args):
    return subprocess.run(
        [sys.executable, "launch/inspect_data.py", "--config", TINY, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_inspect_tiny_recipe_reports_counts_and_marks_trained_spans(repo, tmp_path):
    proc = _inspect(repo, "data.prompt_masking=true", "train.max_seq_len=4096", f"data.cache_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "source data/samples/chat_en.jsonl: 66 rows -> 66 records" in out
    assert "source data/samples/chat_fi.jsonl: 66 rows -> 66 records" in out
    assert re.search(r"sft examples: \d+ \(en: \d+, fi: \d+\) from 132 records", out)
    assert "tokens per example: min" in out and "truncated" in out
    # with prompt masking the user turn is outside the marks and the assistant turn inside, with its end token
    rendered = out.split("marked ⟦...⟧:", 1)[1]
    assert "<|im_start|>user\n" in rendered and "<|im_end|>⟧" in rendered
    assert rendered.index("<|im_start|>user") < rendered.index("⟦")


def test_inspect_bad_file_is_one_line_error(repo, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n'
    )
    proc = _inspect(repo, f"data.sources=[{{path: {bad}, format: messages}}]", f"data.cache_dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:2" in lines[0] and "Traceback" not in proc.stderr
    skip = _inspect(
        repo,
        f"data.sources=[{{path: {bad}, format: messages}}]",
        "data.on_invalid=skip",
        f"data.cache_dir={tmp_path}",
    )
    assert skip.returncode == 0, skip.stderr
    assert "malformed_json=1" in skip.stdout


def test_show_examples_per_source_and_language_and_translations_beside_originals(repo, tmp_path):
    import json

    rows = [
        json.loads(line) for line in (repo / "data" / "samples" / "chat_en.jsonl").read_text().splitlines()
    ][:2]
    translated = tmp_path / "chat_en.fi.jsonl"
    translated.write_text(
        "".join(
            json.dumps(
                {
                    "source_id": row["source_id"],
                    "lang": "fi",
                    "messages": [
                        {"role": m["role"], "content": f"KÄÄNNETTY {i}", "orig_content": m["content"]}
                        for i, m in enumerate(row["messages"])
                    ],
                },
                ensure_ascii=False,
            )
            + "\n"
            for row in rows
        ),
        encoding="utf-8",
    )
    sources = (
        "data.sources=[{path: data/samples/chat_en.jsonl, format: messages, lang: en, max_records: 4}, "
        f"{{path: {translated}, format: messages, lang: fi}}]"
    )
    proc = _inspect(repo, sources, "--show", "2", "data.prompt_masking=true", f"data.cache_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "=== data/samples/chat_en.jsonl (en): 4 examples, the first 2 ===" in out
    assert f"=== {translated} (fi): 2 examples, the first 2 ===" in out
    assert out.count("tokens with loss are marked") == 4 and out.count("⟦") >= 4
    beside = out.split("translations beside their originals (the first 2) ===", 1)[1]
    assert beside.count("--- chat-") == 2 and "[user]" in beside and "[assistant]" in beside
    first = rows[0]["messages"][0]["content"].split()[0]
    assert any(
        line.startswith(first) and line.rstrip().endswith("KÄÄNNETTY 0") for line in beside.splitlines()
    )
