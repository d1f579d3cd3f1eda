import re
import subprocess
import sys

TINY = "recipes/test/tiny_sft.yaml"
TINY_DPO = "recipes/test/tiny_dpo.yaml"


def _inspect(repo, *args, config=TINY):
    return subprocess.run(
        [sys.executable, "launch/inspect_data.py", "--config", config, *args],
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


def test_language_contrast_source_is_preference_data(repo, tmp_path):
    """Translations (the parallel sample chats, shaped as launch/translate.py writes them) as DPO pairs."""
    import json

    def rows(name):
        return [json.loads(line) for line in (repo / "data" / "samples" / name).read_text().splitlines()][:16]

    contrast = tmp_path / "chat_en.fi.jsonl"
    with contrast.open("w", encoding="utf-8") as handle:
        for en, fi in zip(rows("chat_en.jsonl"), rows("chat_fi.jsonl")):
            messages = [
                {"role": a["role"], "content": b["content"], "orig_content": a["content"]}
                for a, b in zip(en["messages"], fi["messages"])
            ]
            row = {"source_id": fi["source_id"], "lang": "fi", "messages": messages}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    sources = f"data.sources=[{{path: {contrast}, format: language_contrast}}]"
    proc = _inspect(repo, sources, "--show", "1", f"data.cache_dir={tmp_path}", config=TINY_DPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # row 14 answers "Au." in both languages: no contrast, dropped and counted
    assert (
        f"source {contrast}: 16 rows -> 15 records; left out: chosen_equals_rejected=1 (e.g. {contrast}:14)"
        in out
    )
    assert "preference examples: 15 (fi: 15) from 15 records" in out
    chosen, rejected = out.split("marked ⟦...⟧:", 1)[1].split("--- rejected ---", 1)
    first = rows("chat_fi.jsonl")[0]["messages"]
    assert first[0]["content"] in chosen and first[0]["content"] in rejected  # the translated prompt in both
    assert "⟦" + first[1]["content"][:40] in chosen
    assert "⟦" + rows("chat_en.jsonl")[0]["messages"][1]["content"][:40] in rejected
    # an SFT job refuses it: the config check knows it as preference data, and so does the data pipeline
    sft = _inspect(repo, sources, f"data.cache_dir={tmp_path}")
    assert sft.returncode == 2 and "data.max_prompt_length (512) must be smaller" in sft.stderr
    sft = _inspect(repo, sources, "data.max_prompt_length=128", f"data.cache_dir={tmp_path}")
    assert sft.returncode == 2 and "needs chat sources (messages, oasst_tree)" in sft.stderr
