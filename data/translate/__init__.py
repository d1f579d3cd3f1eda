"""Translating chat and preference data with the model itself (launch/translate.py).

- `segment`: texts -> single-line segments and verbatim parts (code fences, markers, blank lines), reassembled
  exactly;
- `prompt`: the few-shot completion prompt and the built-in English->Finnish examples;
- `items`: records -> text fields -> translated output rows (the source schema plus `orig_*` fields);
- `clean`: the filters, each removal counted by reason;
- `run`: the restartable, distributed job and its report.
"""
