"""Jobs that generate with a model, on one generation engine, and the scorers of what they generate.

`generate.py` the engine (batched, resumable, across ranks or under FSDP2 in lockstep); `job.py` the start and
end every generation job shares (process group, logging, seeds, config files); `benchmarks.py` reads
benchmark prompts (eval scores them, make_pairs refuses them); `config.py` and
`runner.py` IFEval runs (launch/eval.py); `translation/` translation with the model itself (launch/translate.py);
`pairs/` on-policy preference pairs from the model's own samples (launch/make_pairs.py);
`language.py` and `report.py` the response-language rate, tables and charts; `ifeval/` our own IFEval scorer,
pure Python (no torch).
"""
