"""On-policy preference pairs (launch/make_pairs.py): prompts screened and keyed (prompts.py), answers sampled with
eval's generation engine and paired by language, then instruction verdicts (pairing.py, pure), outputs and report
(job.py); config.py holds the job's settings."""
