"""The data layer: rows -> records -> tokenized examples -> batches. Knows nothing of the trainer or eval.

`config.py` the data settings (and `option`, the documented dataclass field every config uses); `sources/` and
`io.py` read hub datasets and local files into validated records (`records.py`), every skip counted; `mix.py`
nested en/fi mixes; `templates.py` chat rendering with the spans of the trained text; `tokenize.py` records ->
examples; `store.py` the tokenized dataset on disk, memory-mapped; `scan.py` sources read in parts and spooled,
and the mix selected; `build.py` the cold start all ranks share; `group.py` how ranks wait for each other without
blocking in a collective; `sampler.py` the resumable step sampler; `batching.py` one step's examples ->
micro-batches (padded or packed, fillers, normaliser shares) on `collate.py` and `packing.py`; `pipeline.py` the path the trainer and inspect_data share; `translate/` the pure parts of translation;
`text.py` text helpers the generation jobs share.
"""
