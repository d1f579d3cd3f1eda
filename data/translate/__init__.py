"""The pure parts of translating chat and preference data with the model itself (launch/translate.py).

- `segment`: texts -> single-line segments and verbatim parts (code fences, markers, blank lines), reassembled
  exactly;
- `prompt`: the few-shot completion prompt and the built-in English->Finnish examples;
- `items`: records -> text fields -> translated output rows (the source schema plus `orig_*` fields);
- `clean`: the filters, each removal counted by reason;
- `config`: the prompt's and the filters' settings.

The job itself (model, ranks, resumable output, report) is eval/translation/: it generates with eval's engine.
"""
