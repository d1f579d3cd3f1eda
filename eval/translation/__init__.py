"""Translation with the model itself (launch/translate.py), on eval's generation engine (eval/generate.py).

`config.py` the job's settings; `job.py` the inputs, the job and its dry run; `translator.py` one chunk of
records -> translated and cleaned rows, and the model translator (few-shot prompts, batched greedy decoding,
lockstep under FSDP2); `chunks.py` the distributed, resumable loop over chunks; `report.py` the outputs and the
report. The pure parts (segmenting, prompts, cleaning filters, items) live in data/translate/.
"""
